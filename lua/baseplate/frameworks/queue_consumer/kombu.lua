-- Baseplate.py's name for the AMQP consumer factory: the same module as
-- baseplate.frameworks.queue_consumer.amqp (KombuQueueConsumerFactory).
return require("baseplate.frameworks.queue_consumer.amqp")
