"""A local Durable Functions back end: real SDK replay, in-process activities, a clock you control.

In Azure the Durable Functions host keeps histories, schedules work and replays orchestrators. Tests and the
demo need the same behaviour without the host, so this runner plays the host's part and nothing else:

- it keeps each instance's history as the host would hand it to a Python worker (`history.py`),
- it runs an orchestrator by calling the SDK's `Orchestrator(fn).handle(DurableOrchestrationContext)` over
  that history, i.e. the SDK's own replay and task-matching code, and reads the returned actions,
- it turns new actions into history the way the extension does (TaskScheduled, TimerCreated,
  SubOrchestrationInstanceCreated, each with the next sequence number), runs activities in-process,
  fires timers from a manual clock, delivers raised events, and retries `call_activity_with_retry` the way
  DurableTask's retry interceptor does (a timer between attempts, and one after the last failure, which
  the SDK waits for before it fails the task).

Limits, by design: one message per episode (the host may batch several; results are the same), no
entities, durable HTTP or sub-orchestrator retries, and a cancelled timer is dropped instead of firing into
the void. It is a development and test tool only.
"""

from __future__ import annotations

import itertools
import json
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack import history as h

ERROR_LABEL = "\n\n$OutOfProcData$:"
MAX_STEPS = 100_000


class RunnerError(RuntimeError):
    """The runner met something it does not emulate, or an orchestrator misbehaved."""


class InstanceNotFound(LookupError):
    pass


class InstanceNotRunning(RuntimeError):
    """Raising an event to a finished instance; the host answers 410 Gone."""


class ManualClock:
    """The runner's notion of now; moves only when told to."""

    def __init__(self, start: datetime | None = None):
        self._now = (start or datetime(2030, 1, 1, 9, 0, tzinfo=UTC)).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        self._now += delta
        return self._now

    def set(self, value: datetime) -> None:
        value = value.astimezone(UTC)
        if value < self._now:
            raise ValueError("the clock only moves forward")
        self._now = value


@dataclass(frozen=True)
class InstanceStatus:
    """What `DurableOrchestrationClient.get_status` would tell about an instance."""

    instance_id: str
    name: str
    runtime_status: str  # Pending, Running, Completed, Failed
    input: Any
    output: Any
    custom_status: Any
    created_time: datetime
    last_updated_time: datetime
    parent_instance_id: str | None
    waiting_for: tuple[str, ...]  # external event names the orchestrator currently waits on


@dataclass
class _Retry:
    name: str
    input_json: str | None
    max_attempts: int
    interval: timedelta
    attempts: int = 1


@dataclass
class _Instance:
    instance_id: str
    name: str
    input_json: str | None
    parent: tuple[str, int] | None
    created: datetime
    execution_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    history: list[dict[str, Any]] = field(default_factory=list)
    inbox: deque[dict[str, Any]] = field(default_factory=deque)
    status: str = "Pending"
    output: Any = None
    error: str | None = None
    custom_status: Any = None
    updated: datetime | None = None
    next_seq: int = 0
    seen_actions: int = 0
    action_seq: dict[int, int] = field(default_factory=dict)  # flat action index -> sequence number
    timers: dict[int, datetime] = field(default_factory=dict)  # pending timers: seq -> fire time
    cancelled_timers: list[int] = field(default_factory=list)
    retries: dict[int, _Retry] = field(default_factory=dict)  # attempt or retry-timer seq -> retry state
    waiting_for: tuple[str, ...] = ()
    episodes: list[dict[str, Any]] = field(default_factory=list)  # the SDK's answer per episode

    @property
    def running(self) -> bool:
        return self.status in ("Pending", "Running")


@dataclass
class _Work:
    instance_id: str
    seq: int
    name: str
    input_json: str | None


def _sdk() -> Any:
    """Import the SDK lazily: `gatekeeper` stays importable (and testable) without the Functions worker."""
    from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
    from azure.durable_functions.orchestrator import Orchestrator

    return Orchestrator, DurableOrchestrationContext


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def flatten(actions: Iterable[Any]) -> list[dict[str, Any]]:
    """Atomic actions in scheduling order: nested lists (replay schema V1) and WhenAny/WhenAll
    compound actions (V2+) opened up, because each atomic action takes its own sequence number."""
    flat: list[dict[str, Any]] = []
    for item in actions:
        if isinstance(item, list):
            flat.extend(flatten(item))
        elif "compoundActions" in item:
            flat.extend(flatten(item["compoundActions"]))
        else:
            flat.append(item)
    return flat


def registered_functions(
    blueprint: Any,
) -> tuple[dict[str, Callable[..., Any]], dict[str, Callable[[Any], Any]]]:
    """(orchestrators, activities) by function name, read from the blueprint's function builders, as the
    Functions host indexes them: the orchestrator's generator function, the activity's plain function."""
    orchestrators: dict[str, Callable[..., Any]] = {}
    activities: dict[str, Callable[[Any], Any]] = {}
    for builder in blueprint._function_builders:  # what `register_functions` and indexing read, too
        function = builder._function
        trigger = function.get_trigger()
        name = function.get_function_name()
        kind = trigger.type if trigger is not None else None
        if kind == "orchestrationTrigger":
            orchestrators[name] = function._func.orchestrator_function
        elif kind == "activityTrigger":
            activities[name] = function._func
    return orchestrators, activities


class LocalOrchestrationRunner:
    """Drives registered orchestrators and activities through the real SDK replay code.

    `orchestrators` maps function names to generator functions `fn(context)`; `activities` maps names to
    plain callables `fn(input) -> output` (the deserialized input, JSON-serialisable output).
    """

    # Replay schema V3 is what current hosts send; long-timer splitting stays off (no max timer given).
    SCHEMA_VERSION = 2

    def __init__(
        self,
        orchestrators: Mapping[str, Callable[..., Any]],
        activities: Mapping[str, Callable[[Any], Any]],
        clock: ManualClock | None = None,
    ):
        self.orchestrators = dict(orchestrators)
        self.activities = dict(activities)
        self.clock = clock or ManualClock()
        self._instances: dict[str, _Instance] = {}
        self._work: deque[_Work] = deque()
        self.activity_log: list[tuple[str, str, int]] = []  # (instance, activity, attempt seq), for tests

    @classmethod
    def from_blueprint(cls, blueprint: Any, clock: ManualClock | None = None) -> LocalOrchestrationRunner:
        """A runner over every orchestrator and activity decorated on a Durable Functions blueprint (or app),
        under the names the host indexes them by: the registrations are the only list."""
        orchestrators, activities = registered_functions(blueprint)
        return cls(orchestrators, activities, clock)

    # ----- client side ---------------------------------------------------------------------------------

    def start(self, name: str, instance_id: str | None = None, input: Any = None) -> str:
        """Schedule a new instance (like `client.start_new`); it runs on the next `run_until_idle`."""
        if name not in self.orchestrators:
            raise RunnerError(f"no orchestrator named {name!r} is registered")
        instance_id = instance_id or uuid.uuid4().hex
        existing = self._instances.get(instance_id)
        if existing is not None and existing.running:
            raise RunnerError(f"instance {instance_id} already exists and is {existing.status}")
        self._create(name, instance_id, None if input is None else _dumps(input), parent=None)
        return instance_id

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Deliver an external event (like `client.raise_event`)."""
        instance = self._get(instance_id)
        if not instance.running:
            raise InstanceNotRunning(f"instance {instance_id} is {instance.status}")
        instance.inbox.append(h.event_raised(self.clock.now(), name, _dumps(data)))

    def status(self, instance_id: str) -> InstanceStatus | None:
        instance = self._instances.get(instance_id)
        if instance is None:
            return None
        return InstanceStatus(
            instance_id=instance.instance_id,
            name=instance.name,
            runtime_status=instance.status,
            input=None if instance.input_json is None else json.loads(instance.input_json),
            output=instance.output if instance.error is None else instance.error,
            custom_status=instance.custom_status,
            created_time=instance.created,
            last_updated_time=instance.updated or instance.created,
            parent_instance_id=instance.parent[0] if instance.parent else None,
            waiting_for=instance.waiting_for,
        )

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self._get(instance_id).history))

    def instances(self) -> list[str]:
        return list(self._instances)

    def pending_timers(self, instance_id: str) -> dict[int, datetime]:
        return dict(self._get(instance_id).timers)

    def cancelled_timers(self, instance_id: str) -> list[int]:
        return list(self._get(instance_id).cancelled_timers)

    def episodes(self, instance_id: str) -> list[dict[str, Any]]:
        """The SDK's answer (isDone, actions, output, customStatus) after each episode."""
        return json.loads(json.dumps(self._get(instance_id).episodes))

    # ----- driving -------------------------------------------------------------------------------------

    def run_until_idle(self) -> int:
        """Run episodes, activities and due timers until nothing can move without the clock. Returns the
        number of steps taken."""
        for steps in itertools.count():
            if steps > MAX_STEPS:
                raise RunnerError("no quiescence after many steps; is an orchestrator looping?")
            self._collect_due_timers()
            instance = next((i for i in self._instances.values() if i.inbox and i.running), None)
            if instance is not None:
                self._episode(instance)
                continue
            if self._work:
                self._run_activity(self._work.popleft())
                continue
            return steps
        raise AssertionError("unreachable")

    def step(self, instance_id: str) -> bool:
        """Run one episode of one instance (its oldest pending message), without running activities: lets a
        test put events between an orchestrator's decision and its activity's result. False if idle."""
        instance = self._get(instance_id)
        if not (instance.inbox and instance.running):
            return False
        self._episode(instance)
        return True

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by `delta`, firing every timer that falls due on the way, in order."""
        target = self.clock.now() + delta
        self.run_until_idle()
        while (due := self._next_timer()) is not None and due <= target:
            self.clock.set(max(due, self.clock.now()))
            self.run_until_idle()
        self.clock.set(target)
        self.run_until_idle()

    def next_timer(self) -> datetime | None:
        return self._next_timer()

    def run_until_complete(self, instance_id: str, horizon: timedelta = timedelta(days=30)) -> InstanceStatus:
        """Run, jumping the clock from timer to timer, until the instance finishes or `horizon` passes."""
        limit = self.clock.now() + horizon
        self.run_until_idle()
        while self._get(instance_id).running:
            due = self._next_timer()
            if due is None or due > limit:
                break
            self.clock.set(max(due, self.clock.now()))
            self.run_until_idle()
        status = self.status(instance_id)
        assert status is not None
        return status

    def replay(self, instance_id: str) -> dict[str, Any]:
        """Run the orchestrator once more over its recorded history, every event marked as played, and
        return the SDK's answer: the same actions as before, or replay is not deterministic."""
        instance = self._get(instance_id)
        history = [dict(e, IsPlayed=True) for e in instance.history]
        return self._invoke(instance, history)[0]

    # ----- internals -----------------------------------------------------------------------------------

    def _get(self, instance_id: str) -> _Instance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise InstanceNotFound(f"no instance with id {instance_id}")
        return instance

    def _create(self, name: str, instance_id: str, input_json: str | None, parent: tuple[str, int] | None) -> None:
        now = self.clock.now()
        instance = _Instance(instance_id=instance_id, name=name, input_json=input_json, parent=parent, created=now)
        parent_ref = None
        if parent is not None:
            parent_instance = self._get(parent[0])
            parent_ref = {
                "Name": parent_instance.name,
                "TaskScheduleId": parent[1],
                "OrchestrationInstance": {"InstanceId": parent[0], "ExecutionId": parent_instance.execution_id},
            }
        instance.inbox.append(
            h.execution_started(now, name, instance_id, instance.execution_id, input_json, parent_ref)
        )
        self._instances[instance_id] = instance

    def _next_timer(self) -> datetime | None:
        times = [t for i in self._instances.values() if i.running for t in i.timers.values()]
        return min(times) if times else None

    def _collect_due_timers(self) -> None:
        now = self.clock.now()
        for instance in self._instances.values():
            due = sorted((t, seq) for seq, t in instance.timers.items() if t <= now)
            for fire_at, seq in due:
                del instance.timers[seq]
                instance.inbox.append(h.timer_fired(now, seq, fire_at))

    def _invoke(self, instance: _Instance, history: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
        """One call into the SDK. Returns (state, error): the orchestrator's answer and, when it raised,
        the error text (the SDK raises with its state appended after `$OutOfProcData$:`)."""
        orchestrator_cls, context_cls = _sdk()
        payload = {
            "history": history,
            "instanceId": instance.instance_id,
            "isReplaying": False,
            "parentInstanceId": instance.parent[0] if instance.parent else None,
            "input": instance.input_json,
            "upperSchemaVersion": self.SCHEMA_VERSION,
        }
        context = context_cls.from_json(json.dumps(payload))
        fn = self.orchestrators[instance.name]
        try:
            return json.loads(orchestrator_cls(fn).handle(context)), None
        except Exception as exc:  # the orchestrator raised: the SDK reports it this way
            text = str(exc)
            if ERROR_LABEL in text:
                message, state = text.split(ERROR_LABEL, 1)
                return json.loads(state), message
            return {"isDone": False, "actions": []}, f"{type(exc).__name__}: {text}"

    def _episode(self, instance: _Instance) -> None:
        now = self.clock.now()
        message = instance.inbox.popleft()
        message["Timestamp"] = h.timestamp(now)
        played = [dict(e, IsPlayed=True) for e in instance.history]
        new = [h.orchestrator_started(now), message]
        instance.status = "Running"
        instance.updated = now
        state, error = self._invoke(instance, played + new)
        instance.history = played + new
        instance.episodes.append(state)
        instance.custom_status = state.get("customStatus")
        decisions = self._retry_decisions(instance, message, now)
        if error is None:
            decisions += self._new_actions(instance, state, now)
        instance.history.extend(decisions)
        if error is not None:
            self._finish(instance, "Failed", None, error, now)
        elif state.get("isDone"):
            self._finish(instance, "Completed", state.get("output"), None, now)
        instance.history.append(h.orchestrator_completed(now))

    def _retry_decisions(self, instance: _Instance, message: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """DurableTask's retry interceptor: after a failed attempt a timer, after the timer another attempt
        while attempts remain. The SDK mirrors this with its own placeholder tasks and sequence numbers."""
        kind = message["EventType"]
        if kind == h.EventType.TASK_FAILED and message["TaskScheduledId"] in instance.retries:
            retry = instance.retries.pop(message["TaskScheduledId"])
            seq = self._seq(instance)
            instance.retries[seq] = retry
            instance.timers[seq] = now + retry.interval
            return [h.timer_created(now, seq, now + retry.interval)]
        if kind == h.EventType.TIMER_FIRED and message["TimerId"] in instance.retries:
            retry = instance.retries.pop(message["TimerId"])
            if retry.attempts >= retry.max_attempts:
                return []  # the SDK now fails the task with the last error
            retry.attempts += 1
            seq = self._seq(instance)
            instance.retries[seq] = retry
            self._work.append(_Work(instance.instance_id, seq, retry.name, retry.input_json))
            return [h.task_scheduled(now, seq, retry.name, retry.input_json)]
        return []

    def _new_actions(self, instance: _Instance, state: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        flat = flatten(state.get("actions") or [])
        events: list[dict[str, Any]] = []
        for index, action in enumerate(flat[: instance.seen_actions]):  # timers cancelled since
            seq = instance.action_seq.get(index)
            if action.get("actionType") == 5 and action.get("isCanceled") and seq in instance.timers:
                del instance.timers[seq]
                instance.cancelled_timers.append(seq)
        waiting = [a["externalEventName"] for a in flat if a.get("actionType") == 6]
        for index in range(instance.seen_actions, len(flat)):
            action = flat[index]
            kind = action.get("actionType")
            if kind in (0, 1):  # CallActivity, CallActivityWithRetry
                seq = self._seq(instance)
                name, input_json = action["functionName"], action.get("input")
                if name not in self.activities:
                    raise RunnerError(f"orchestrator {instance.name} called unknown activity {name!r}")
                if kind == 1:
                    options = action["retryOptions"]
                    instance.retries[seq] = _Retry(
                        name,
                        input_json,
                        int(options["maxNumberOfAttempts"]),
                        timedelta(milliseconds=int(options["firstRetryIntervalInMilliseconds"])),
                    )
                events.append(h.task_scheduled(now, seq, name, input_json))
                self._work.append(_Work(instance.instance_id, seq, name, input_json))
            elif kind == 5:  # CreateTimer
                seq = self._seq(instance)
                fire_at = datetime.strptime(action["fireAt"], h.TIMESTAMP_FORMAT).replace(tzinfo=UTC)
                events.append(h.timer_created(now, seq, fire_at))
                if action.get("isCanceled"):
                    instance.cancelled_timers.append(seq)
                else:
                    instance.timers[seq] = fire_at
            elif kind == 2:  # CallSubOrchestrator
                seq = self._seq(instance)
                name = action["functionName"]
                if name not in self.orchestrators:
                    raise RunnerError(f"orchestrator {instance.name} called unknown sub-orchestrator {name!r}")
                child_id = action.get("instanceId") or f"{instance.instance_id}:{seq}"
                events.append(h.sub_orchestration_created(now, seq, name, child_id, action.get("input")))
                self._create(name, child_id, action.get("input"), parent=(instance.instance_id, seq))
            elif kind == 6:  # WaitForExternalEvent: no sequence number, nothing to schedule
                seq = -1
            else:
                raise RunnerError(f"the local runner does not emulate action type {kind} ({action})")
            if seq >= 0:
                instance.action_seq[index] = seq
        instance.seen_actions = len(flat)
        raised = [e.get("Name") for e in instance.history if e["EventType"] == h.EventType.EVENT_RAISED]
        instance.waiting_for = tuple(n for n in dict.fromkeys(waiting) if waiting.count(n) > raised.count(n))
        return events

    def _seq(self, instance: _Instance) -> int:
        seq = instance.next_seq
        instance.next_seq += 1
        return seq

    def _finish(self, instance: _Instance, status: str, output: Any, error: str | None, now: datetime) -> None:
        instance.status = status
        instance.output = output
        instance.error = error
        instance.timers.clear()
        instance.waiting_for = ()
        result_json = _dumps(output) if error is None else _dumps(error)
        instance.history.append(h.execution_completed(now, status, result_json))
        if instance.parent is not None:
            parent = self._get(instance.parent[0])
            seq = instance.parent[1]
            if error is None:
                parent.inbox.append(h.sub_orchestration_completed(now, seq, _dumps(output)))
            else:
                reason = f"Sub-orchestration {instance.name} ({instance.instance_id}) failed: {error}"
                parent.inbox.append(h.sub_orchestration_failed(now, seq, reason, ""))

    def _run_activity(self, work: _Work) -> None:
        instance = self._instances[work.instance_id]
        now = self.clock.now()
        self.activity_log.append((work.instance_id, work.name, work.seq))
        try:
            argument = None if work.input_json is None else json.loads(work.input_json)
            result = self.activities[work.name](argument)
            message = h.task_completed(now, work.seq, _dumps(result))
        except Exception as exc:  # an activity failure is data for the orchestrator, as in the host
            reason = f"{type(exc).__name__}: {exc}"
            details = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            message = h.task_failed(now, work.seq, reason, details)
        if instance.running:
            instance.inbox.append(message)


class RunnerGateway:
    """The orchestration gateway (dispatcher and decision route) over a local runner: what the Durable
    client does in Azure. `auto_run` lets each call run the runner until idle, as the host would."""

    def __init__(self, runner: LocalOrchestrationRunner, *, auto_run: bool = False):
        self.runner = runner
        self.auto_run = auto_run

    def exists(self, instance_id: str) -> bool:
        return self.runner.status(instance_id) is not None

    def start(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> None:
        self.runner.start(orchestrator, instance_id, payload)
        if self.auto_run:
            self.runner.run_until_idle()

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        # As DurableOrchestrationClient.raise_event does: json.dumps(data), then posted as JSON, so the
        # orchestration receives a JSON string, not the object.
        self.runner.raise_event(instance_id, event_name, json.dumps(data))
        if self.auto_run:
            self.runner.run_until_idle()
