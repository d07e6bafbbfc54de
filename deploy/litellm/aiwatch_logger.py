"""LiteLLM callback that sends every call's standard logging payload to Kafka for aiwatch.

aiwatch reads the topic with `format = "litellm"`: each message value is one LiteLLM
`StandardLoggingPayload` as JSON (what LiteLLM hands its callbacks as `standard_logging_object`),
keyed by `litellm_call_id`. Successes and failures are both sent; the payload still holds the prompt
and response text (aiwatch never copies it out), so protect the topic like the gateway's own logs.

Proxy: put this file beside config.yaml and list `aiwatch_logger.proxy_handler_instance` under
`litellm_settings.callbacks` (see config.yaml here). SDK: `litellm.callbacks = [AiwatchKafkaLogger()]`.

Environment:
  AIWATCH_KAFKA_BOOTSTRAP    Kafka bootstrap servers, "host:port[,host:port]" (required)
  AIWATCH_LITELLM_TOPIC      topic (default "ai-litellm")
  AIWATCH_KAFKA_PRODUCER_*   any librdkafka producer option: the rest of the name, lower-cased, with
                             "_" as ".": AIWATCH_KAFKA_PRODUCER_SECURITY_PROTOCOL=SASL_SSL sets
                             security.protocol, AIWATCH_KAFKA_PRODUCER_SASL_PASSWORD sets sasl.password.

Producing never blocks a request: a message goes to librdkafka's in-memory queue and is sent in the
background. If the queue is full (Kafka unreachable for long), the payload is dropped and counted in
`dropped`, with a warning in the log; delivery failures are logged and counted in `failed`. The queue
is flushed when the process exits.
"""

import atexit
import json
import logging
import os

from confluent_kafka import KafkaException, Producer
from litellm.integrations.custom_logger import CustomLogger

log = logging.getLogger("aiwatch_logger")

PRODUCER_PREFIX = "AIWATCH_KAFKA_PRODUCER_"
FLUSH_SECONDS = 10


def producer_config():
    bootstrap = os.environ.get("AIWATCH_KAFKA_BOOTSTRAP")
    if not bootstrap:
        raise RuntimeError("aiwatch_logger: set AIWATCH_KAFKA_BOOTSTRAP (Kafka bootstrap servers)")
    config = {
        "bootstrap.servers": bootstrap,
        "client.id": "litellm-aiwatch-logger",
        "enable.idempotence": True,  # retries never duplicate a payload in the log
        "linger.ms": 20,
        "queue.buffering.max.messages": 100000,
    }
    for name, value in os.environ.items():
        if name.startswith(PRODUCER_PREFIX):
            config[name[len(PRODUCER_PREFIX):].lower().replace("_", ".")] = value
    return config


class AiwatchKafkaLogger(CustomLogger):
    def __init__(self, producer=None, topic=None):
        super().__init__()
        self.topic = topic or os.environ.get("AIWATCH_LITELLM_TOPIC", "ai-litellm")
        self.producer = producer or Producer(producer_config())
        self.dropped = 0
        self.failed = 0
        atexit.register(self.flush)

    def _delivered(self, err, msg):
        if err is not None:
            self.failed += 1
            log.warning("aiwatch_logger: delivery to %s failed: %s", self.topic, err)

    def send(self, kwargs):
        payload = kwargs.get("standard_logging_object")
        if payload is None:
            return
        try:
            value = json.dumps(payload, default=str).encode()
            key = (payload.get("litellm_call_id") or payload.get("id") or "").encode() or None
            self.producer.produce(self.topic, value=value, key=key, on_delivery=self._delivered)
        except BufferError:
            self.dropped += 1
            log.warning("aiwatch_logger: producer queue full, payload dropped (%d so far)", self.dropped)
        except (KafkaException, TypeError, ValueError) as exc:
            self.dropped += 1
            log.warning("aiwatch_logger: payload not sent: %s", exc)
        self.producer.poll(0)  # serve delivery callbacks; never waits

    def flush(self, timeout=FLUSH_SECONDS):
        left = self.producer.flush(timeout)
        if left:
            log.warning("aiwatch_logger: %d payloads not delivered at shutdown", left)
        return left

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.send(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.send(kwargs)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.send(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.send(kwargs)


_instance = None


def __getattr__(name):
    """`proxy_handler_instance`, what `litellm_settings.callbacks: [aiwatch_logger.proxy_handler_instance]`
    loads, is made on first access: importing this module needs no Kafka settings, and a proxy without
    AIWATCH_KAFKA_BOOTSTRAP fails at startup with a message naming it."""
    global _instance
    if name == "proxy_handler_instance":
        if _instance is None:
            _instance = AiwatchKafkaLogger()
        return _instance
    raise AttributeError(name)
