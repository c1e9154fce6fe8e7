"""Azurite answers the real storage clients (tables and queues) started by the session fixture."""

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient


def test_tables_round_trip(storage_connection_string, unique_name):
    service = TableServiceClient.from_connection_string(storage_connection_string)
    table = service.create_table(unique_name)
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "value": 42})
    assert table.get_entity("p", "r")["value"] == 42


def test_queue_round_trip(storage_connection_string, unique_name):
    queue = QueueClient.from_connection_string(storage_connection_string, unique_name)
    queue.create_queue()
    queue.send_message("hello")
    messages = list(queue.receive_messages())
    assert [m.content for m in messages] == ["hello"]
