"""OrbitMQ client: `Producer`, `PushConsumer`, `PullConsumer`, `Admin` and their errors.

    from orbitmq.client import Producer, PushConsumer, PullConsumer, Admin, Message
"""

from orbitmq.client.admin import Admin
from orbitmq.client.consumer import ConsumeStatus, PushConsumer
from orbitmq.client.consumer_base import MessageModel
from orbitmq.client.errors import OrbitError
from orbitmq.client.message import Message, SendReceipt
from orbitmq.client.producer import Producer
from orbitmq.client.pull_consumer import PullConsumer
from orbitmq.client.routes import MessageQueue, select_by_hash
from orbitmq.common.credentials import Credentials
from orbitmq.common.tls import TlsConfig

__all__ = ["Admin", "ConsumeStatus", "Credentials", "Message", "MessageModel", "MessageQueue", "OrbitError",
           "Producer", "PullConsumer", "PushConsumer", "SendReceipt", "TlsConfig", "select_by_hash"]
