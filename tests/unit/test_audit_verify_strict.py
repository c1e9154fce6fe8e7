"""`audit verify` accepts only what it actually checked (issue 10, class 6).

Each case here exited 0 before: a repeated key, an unhashed extra field, a frontier with nothing signed
behind it, a range that disagrees with its entries, a bundle cut back to an older checkpoint when the
verifier knows the size. Hostile JSON (NaN, nesting thousands deep) is bad input (exit 2), never a
traceback. The property tests apply one mutation at a time to valid bundles and require a refusal.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.audit import strict_json
from gatekeeper.audit.bundle import BundleFormatError, build_bundle, check_bundle, dumps, read_bundle
from gatekeeper.audit.checkpoints import Checkpoint, SignedCheckpoint, origin_for, sign_checkpoint
from gatekeeper.audit.merkle import EMPTY_ROOT, CompactRange, MerkleTree
from gatekeeper.audit.records import ENTRY_FIELDS
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.audit.verify import VerificationError, check_log
from gatekeeper.audit.worm_check import against_archive
from gatekeeper.cli import main
from tests.unit.test_audit_support import make_bundle, make_checkpoints, make_entries

TIME = "2026-03-01T09:00:00.000000Z"


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()


@pytest.fixture(scope="module")
def pem_path(tmp_path_factory, signer):
    path = tmp_path_factory.mktemp("pem") / "checkpoint-public-key.pem"
    path.write_text(signer.public_key_pem())
    return path


@pytest.fixture
def bundle(signer):
    return make_bundle(signer, n=30, every=10)


def run_verify(tmp_path, capsys, data: bytes | dict[str, Any], pem_path, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "audit.bundle.json"
    path.write_bytes(data if isinstance(data, bytes) else dumps(data))
    code = main(["audit", "verify", str(path), "--public-key", str(pem_path), "--no-progress", *extra])
    out, err = capsys.readouterr()
    return code, out, err


# -- each case the issue lists, through the CLI --------------------------------------------------------


def test_an_entry_with_a_repeated_key_fails(tmp_path, capsys, bundle, pem_path):
    """`"actor"` twice: Python keeps the last (the hashed one), another reader shows the first."""
    genuine = json.dumps(bundle["entries"][17], separators=(",", ":"))
    raw = dumps(bundle).replace(genuine.encode(), b'{"actor":"user:mallory",' + genuine[1:].encode())
    assert raw != dumps(bundle)
    code, out, err = run_verify(tmp_path, capsys, raw, pem_path)
    assert code == 1
    assert (
        out == "first bad entry: seq 17: entry repeats the key 'actor': the JSON is ambiguous "
        "(readers disagree on its value)\n"
    )
    assert "audit.bundle.json: entries[17] repeats the key 'actor'" in err


def test_a_bundle_with_a_repeated_top_level_key_fails(tmp_path, capsys, bundle, pem_path):
    raw = b'{"tenant":"fabrikam",' + dumps(bundle)[1:]
    code, out, _ = run_verify(tmp_path, capsys, raw, pem_path)
    assert code == 1
    assert out.startswith("first bad entry: seq 0: top level repeats the key 'tenant'")


def test_a_repeated_key_with_the_same_value_fails_too(tmp_path, capsys, bundle, pem_path):
    raw = dumps(bundle).replace(b'"range":{', b'"range":{"start_seq":0,', 1)
    code, out, _ = run_verify(tmp_path, capsys, raw, pem_path)
    assert (code, out.startswith("first bad entry: seq 0: range repeats the key 'start_seq'")) == (1, True), out


def test_an_unhashed_extra_field_in_an_entry_fails(tmp_path, capsys, bundle, pem_path):
    bundle["entries"][12]["approved_by"] = "user:cfo"
    code, out, _ = run_verify(tmp_path, capsys, bundle, pem_path)
    assert code == 1
    assert out == (
        "first bad entry: seq 12: field 'approved_by' is not covered by the entry's hash "
        "(unhashed fields are refused)\n"
    )


def test_a_frontier_with_nothing_signed_behind_it_fails(tmp_path, capsys, signer, pem_path):
    """No entries, no checkpoints, a frontier of 36 leaves: before, "verified 36 entries"."""
    entries = make_entries("contoso", 36)
    frontier = CompactRange()
    for entry in entries:
        frontier.append(bytes.fromhex(entry["entry_hash"]))
    bundle = build_bundle(
        "contoso", entries, [], start_seq=36, end_seq=36, exported_at=TIME, public_keys=[signer.public_key_pem()]
    )
    bundle["range"]["from"] = TIME  # an honest exporter's range for "nothing since then"
    assert bundle["entries"] == [] and bundle["checkpoints"] == [] and len(bundle["frontier"]) == 2
    code, out, _ = run_verify(tmp_path, capsys, bundle, pem_path)
    assert code == 1
    assert out.startswith("first bad entry: seq 0: no trusted checkpoint signature covers entry 35")


def test_an_empty_range_anchored_at_a_signed_checkpoint_still_verifies(tmp_path, capsys, signer, pem_path):
    entries = make_entries("contoso", 20)
    checkpoints = make_checkpoints("contoso", entries, signer, 10)
    bundle = build_bundle(
        "contoso",
        entries,
        checkpoints,
        start_seq=20,
        end_seq=20,
        exported_at=TIME,
        time_from="2027-01-01T00:00:00.000000Z",
        public_keys=[signer.public_key_pem()],
    )
    code, out, _ = run_verify(tmp_path, capsys, bundle, pem_path)
    assert (code, out.startswith("verified 20 entries, root ")) == (0, True), out


@pytest.mark.parametrize(
    ("start_seq", "end_seq", "time_from", "time_to", "bad_seq", "fragment"),
    [
        (0, 30, 5, None, 0, "outside the bundle's range"),  # the first entry predates range.from
        (0, 30, None, 3, 10, "already covers the range"),  # range.to ends long before the bundle does
        (12, 30, None, None, 0, "range.from is open (the whole log) but the bundle leaves out seq 0..11"),
        (12, 30, 14, None, 12, "outside the bundle's range"),
        (12, 30, 12, 2, 12, "is after range.to"),
    ],
)
def test_a_range_that_disagrees_with_the_entries_fails(
    tmp_path, capsys, signer, pem_path, start_seq, end_seq, time_from, time_to, bad_seq, fragment
):
    bundle = make_bundle(signer, n=30, every=10, start_seq=start_seq, end_seq=end_seq)
    times = [e["at"] for e in make_entries("contoso", 30)]
    bundle["range"]["from"] = times[time_from] if time_from is not None else None
    bundle["range"]["to"] = times[time_to] if time_to is not None else None
    code, out, _ = run_verify(tmp_path, capsys, bundle, pem_path)
    assert code == 1, out
    assert out.startswith(f"first bad entry: seq {bad_seq}: ") and fragment in out, out


def test_range_end_seq_short_of_the_entries_fails(tmp_path, capsys, bundle, pem_path):
    bundle["range"]["end_seq"] = 25
    code, out, _ = run_verify(tmp_path, capsys, bundle, pem_path)
    assert code == 1 and "range.end_seq 25 disagrees with the entries" in out


def test_an_honest_time_range_verifies(tmp_path, capsys, signer, pem_path):
    bundle = make_bundle(signer, n=30, every=10, start_seq=12, end_seq=20)
    assert bundle["range"]["from"] and bundle["range"]["to"]
    assert run_verify(tmp_path, capsys, bundle, pem_path)[0] == 0


def test_a_malformed_range_time_is_bad_input(tmp_path, capsys, bundle, pem_path):
    bundle["range"]["from"] = "last tuesday"
    code, _, err = run_verify(tmp_path, capsys, bundle, pem_path)
    assert code == 2 and "range.from" in err


def test_removing_the_first_checkpoint_leaves_an_unchecked_proof(tmp_path, capsys, bundle, pem_path):
    del bundle["checkpoints"][0]
    code, out, _ = run_verify(tmp_path, capsys, bundle, pem_path)
    assert code == 1 and "consistency proof from size 10 to 20 links no two checkpoints" in out


# -- --expect-size -------------------------------------------------------------------------------------


def cut_back(bundle: dict[str, Any], size: int) -> dict[str, Any]:
    """The log truncated to an older checkpoint, re-exported consistently: it verifies on its own."""
    cut = copy.deepcopy(bundle)
    cut["entries"] = cut["entries"][:size]
    cut["range"]["end_seq"] = size
    cut["checkpoints"] = [c for c in cut["checkpoints"] if SignedCheckpoint.model_validate(c).checkpoint().size <= size]
    cut["consistency"] = [p for p in cut["consistency"] if p["to_size"] <= size]
    return cut


def test_expect_size_catches_a_bundle_cut_back_to_an_older_checkpoint(tmp_path, capsys, bundle, pem_path):
    cut = cut_back(bundle, 20)
    assert run_verify(tmp_path, capsys, cut, pem_path)[0] == 0  # on its own, an honest shorter log
    code, out, _ = run_verify(tmp_path, capsys, cut, pem_path, "--expect-size", "30")
    assert code == 1
    assert out == "first bad entry: seq 20: the bundle verifies 20 entries, not the 30 expected (--expect-size)\n"
    code, out, _ = run_verify(tmp_path, capsys, bundle, pem_path, "--expect-size", "30")
    assert code == 0 and out.startswith("verified 30 entries, root ")
    assert run_verify(tmp_path, capsys, bundle, pem_path, "--expect-size", "-1")[0] == 2


# -- strict JSON: bad input is exit 2 with the file and the problem, never a traceback --------------------


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda raw: b"[" * 100_000 + b"]" * 100_000, "nested more than the 64 levels allowed"),
        (lambda raw: raw.replace(b'"entries":[', b'"entries":[' + b"[" * 5000 + b"]" * 5000 + b",", 1), "nested"),
        (lambda raw: raw.replace(b'"start_seq":0', b'"start_seq":NaN', 1), "NaN is not a JSON number"),
        (lambda raw: raw.replace(b'"start_seq":0', b'"start_seq":-Infinity', 1), "-Infinity is not a JSON number"),
        (lambda raw: raw.replace(b'"start_seq":0', b'"start_seq":' + b"9" * 5000, 1), "integer with 5000 digits"),
        (lambda raw: b"\xff" + raw, "not UTF-8"),
        (lambda raw: raw.decode().encode("utf-16"), "not UTF-8"),
        (lambda raw: raw.replace(b'"start_seq":0', b'"start_seq":1e999', 1), "number 1e999 is out of range"),
    ],
)
def test_hostile_json_is_bad_input(tmp_path, capsys, bundle, pem_path, make, fragment):
    code, out, err = run_verify(tmp_path, capsys, make(dumps(bundle)), pem_path)
    assert (code, out) == (2, "")
    assert "audit.bundle.json: " in err and fragment in err, err


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = b'{"subject":"' + b"[{" * 500 + b'","x":[[1]]}'
    assert strict_json.loads(text, source="t")["x"] == [[1]]


def test_verify_bundle_on_bytes_reads_strictly(bundle, signer):
    raw = b'{"format":"x",' + dumps(bundle)[1:]
    result = check_bundle(raw, public_key_pem=signer.public_key_pem())
    assert not result.ok and "top level repeats the key 'format'" in (result.problem or "")


# -- checkpoints of one size that disagree --------------------------------------------------------------


def test_two_genuinely_signed_checkpoints_of_one_size_that_disagree_fail(signer, bundle):
    """A fork: the key signed two different roots for size 20. Whichever matches the entries, the log
    is not one log any more."""
    cp = SignedCheckpoint.model_validate(bundle["checkpoints"][1]).checkpoint()
    other = sign_checkpoint(signer, Checkpoint(cp.origin, 20, b"\x07" * 32, cp.time))
    for position in (1, 2):
        forked = copy.deepcopy(bundle)
        forked["checkpoints"].insert(position, other.model_dump())
        result = check_bundle(forked, public_key_pem=signer.public_key_pem())
        assert (result.ok, result.first_bad_seq) == (False, 10), result.summary()
        assert result.problem == "two signed checkpoints for size 20 disagree (the log forked)"


def test_against_archive_finds_truncation_forks_and_forged_blobs(signer, bundle):
    """The pure comparison behind --against-worm (the Azurite test runs it through the CLI)."""
    from gatekeeper.audit.archive import blob_name
    from gatekeeper.audit.bundle import bundle_keys, parse_header

    entries = make_entries("contoso", 40)
    signed = make_checkpoints("contoso", entries, signer, 10)  # 10, 20, 30, 40
    blobs = [(blob_name("contoso", s.checkpoint().size), json.dumps(s.model_dump()).encode()) for s in signed]
    pem = signer.public_key_pem()

    def check(data: dict[str, Any], archive: list[tuple[str, bytes]]):
        header = parse_header(data)
        return against_archive(header, check_bundle(data, public_key_pem=pem), archive, bundle_keys(header, pem)[0])

    assert check(bundle, blobs[:3]).ok
    truncated = check(bundle, blobs)
    assert (truncated.ok, truncated.first_bad_seq) == (False, 30)
    assert truncated.problem.startswith("missing: the WORM archive holds a checkpoint signed at size 40")
    cp20 = signed[1].checkpoint()
    fork = sign_checkpoint(signer, Checkpoint(cp20.origin, 20, b"\x01" * 32, cp20.time))
    forked = check(bundle, [blobs[0], (blobs[1][0], json.dumps(fork.model_dump()).encode()), blobs[2]])
    assert (forked.ok, forked.first_bad_seq) == (False, 10) and "two signed checkpoints for size 20" in forked.problem
    unarchived = check(bundle, blobs[:2])
    assert not unarchived.ok and "checkpoint at size 30 is not in the WORM archive" in unarchived.problem
    dup = [blobs[0], (blobs[1][0], blobs[1][1].replace(b'{"note"', b'{"note":"x","note"'))]
    assert "repeats the key 'note'" in check(bundle, dup).problem
    attacker = LocalCheckpointKey(__import__("tempfile").mkdtemp(), "attacker").signer()
    alien = sign_checkpoint(attacker, signed[3].checkpoint())
    forged = check(bundle, [*blobs[:3], (blobs[3][0], json.dumps(alien.model_dump()).encode())])
    assert not forged.ok and "signature does not verify" in forged.problem
    misfiled = check(bundle, [*blobs[:3], (blob_name("contoso", 50), blobs[3][1])])
    assert not misfiled.ok and "holds checkpoint" in misfiled.problem
    ranged = make_bundle(signer, n=40, every=10, start_seq=0, end_seq=20)  # range.to = time of entry 19
    assert check(ranged, blobs).ok  # checkpoints 30 and 40 were signed after the range ended


# -- property tests: any single mutation of a valid bundle is refused -------------------------------------

SHAPES = [(30, 10, 0, None), (7, 3, 0, None), (30, 10, 12, 30), (25, 5, 5, 20), (12, 4, 0, 8)]


@pytest.fixture(scope="module")
def valid_bundles(signer):
    return [make_bundle(signer, n=n, every=e, start_seq=s, end_seq=end) for n, e, s, end in SHAPES]


def accepted(raw: bytes, pem: str) -> bool:
    """What `audit verify` decides: exit 0 only when this is True."""
    try:
        data = read_bundle(raw)
        return check_bundle(data, public_key_pem=pem).ok
    except (BundleFormatError, VerificationError):  # exit 2, or exit 1 for a repeated key
        return False


def _flip(text: str, position: int, replacement: str) -> str:
    position %= len(text)
    new = replacement if replacement != text[position] else ("1" if text[position] != "1" else "2")
    return text[:position] + new + text[position + 1 :]


@st.composite
def mutations(draw: st.DrawFn, bundles: list[dict[str, Any]]) -> tuple[int, bytes]:
    index = draw(st.integers(0, len(bundles) - 1))
    bundle = copy.deepcopy(bundles[index])
    entries, rng = bundle["entries"], bundle["range"]
    kind = draw(
        st.sampled_from(
            ["flip_entry", "flip_checkpoint", "add_field", "duplicate_key", "drop_tail", "range", "drop_checkpoint"]
        )
    )
    if kind == "flip_entry":
        entry = entries[draw(st.integers(0, len(entries) - 1))]
        name = draw(st.sampled_from(ENTRY_FIELDS))
        if name == "seq":
            entry["seq"] += draw(st.sampled_from([-2, -1, 1, 2, 1000]))
        else:
            entry[name] = _flip(entry[name], draw(st.integers(0, 10_000)), draw(st.sampled_from("0aZ~é\x1f")))
    elif kind == "flip_checkpoint":
        checkpoint = bundle["checkpoints"][draw(st.integers(0, len(bundle["checkpoints"]) - 1))]
        name = draw(st.sampled_from(["note", "signature", "key_fingerprint", "algorithm"]))
        checkpoint[name] = _flip(checkpoint[name], draw(st.integers(0, 10_000)), draw(st.sampled_from("0aZ+/\n")))
    elif kind == "add_field":
        entry = entries[draw(st.integers(0, len(entries) - 1))]
        name = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(lambda k: k not in entry))
        entry[name] = draw(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)))
    elif kind == "duplicate_key":
        raw = dumps(bundle)
        if draw(st.booleans()):
            key = draw(st.sampled_from(sorted(bundle)))
            return index, b'{"' + key.encode() + b'":' + json.dumps(bundle[key]).encode() + b"," + raw[1:]
        entry = entries[draw(st.integers(0, len(entries) - 1))]
        key = draw(st.sampled_from(ENTRY_FIELDS))
        value = entry[key] if draw(st.booleans()) else "user:mallory"
        genuine = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()
        repeated = b"{" + json.dumps(key).encode() + b":" + json.dumps(value).encode() + b"," + genuine[1:]
        assert genuine in raw
        return index, raw.replace(genuine, repeated, 1)
    elif kind == "drop_tail":
        del entries[len(entries) - draw(st.integers(1, len(entries))) :]
        if draw(st.booleans()):
            rng["end_seq"] = rng["start_seq"] + len(entries)
    elif kind == "range":
        times = [e["at"] for e in make_entries("contoso", SHAPES[index][0])]
        field = draw(st.sampled_from(["from", "to", "start_seq", "end_seq"]))
        first, last = rng["start_seq"], rng["end_seq"]
        if field == "from":  # after the first entry of the bundle
            rng["from"] = times[draw(st.integers(first + 1, len(times) - 1))]
        elif field == "to":  # before a checkpoint that already covered the bundle's first entries
            every = SHAPES[index][1]
            covered = (first // every + 1) * every  # the first checkpoint after seq `first`
            if covered >= last:
                rng["to"] = "2000-01-01T00:00:00.000000Z"  # before every entry
            else:
                rng["to"] = times[draw(st.integers(first, covered - 1))]
        else:
            rng[field] = max(0, rng[field] + draw(st.sampled_from([-3, -1, 1, 2])))
    else:
        del bundle["checkpoints"][draw(st.integers(0, len(bundle["checkpoints"]) - 1))]
    return index, dumps(bundle)


@pytest.fixture(scope="module")
def mutation_strategy(valid_bundles):
    return mutations(valid_bundles)


def test_every_valid_shape_is_accepted(valid_bundles, signer):
    for bundle in valid_bundles:
        assert accepted(dumps(bundle), signer.public_key_pem()), bundle["range"]


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_mutation_of_a_valid_bundle_is_refused(valid_bundles, signer, data):
    index, raw = data.draw(mutations(valid_bundles))
    assert raw != dumps(valid_bundles[index])
    assert not accepted(raw, signer.public_key_pem()), raw[:300]


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    key=st.sampled_from(["a", "actor", "x"]),
    depth=st.integers(0, 200),
    constant=st.sampled_from(["NaN", "Infinity", "-Infinity", "1", '"s"']),
)
def test_strict_reader_refuses_exactly_repeats_constants_and_depth(key, depth, constant):
    nested = "[" * depth + constant + "]" * depth
    text = '{"' + key + '":' + nested + "}"
    try:
        strict_json.loads(text, source="doc")
        refused = None
    except strict_json.StrictJSONError as exc:
        refused = str(exc)
    bad_constant = constant in ("NaN", "Infinity", "-Infinity")
    if depth + 1 > strict_json.MAX_DEPTH:
        assert refused is not None and "levels allowed" in refused
    elif bad_constant:
        assert refused is not None and "is not a JSON number" in refused
    else:
        assert refused is None
    with pytest.raises(strict_json.DuplicateKeyError) as caught:
        strict_json.loads('{"k":1,"z":{"' + key + '":1,"' + key + '":2}}', source="doc")
    assert (caught.value.key, caught.value.path) == (key, ("z",))


def test_verify_log_alone_refuses_a_frontier_without_a_checkpoint(signer):
    tree = MerkleTree(bytes.fromhex(e["entry_hash"]) for e in make_entries("contoso", 5))
    frontier = CompactRange()
    for i in range(5):
        frontier.append(tree.leaf(i))
    keys = {}
    result = check_log("contoso", [], [], keys, start=5, frontier=frontier.hashes, expected_size=5)
    assert not result.ok and result.first_bad_seq == 0 and "frontier alone" in (result.problem or "")
    assert (result.size, result.root) == (0, EMPTY_ROOT.hex())  # nothing is verified
    assert check_log("contoso", [], [], keys).ok  # an empty log claims nothing
    assert origin_for("contoso") == "gatekeeper.audit/contoso"
