"""kombu's Redis transport, with one Redis client per channel for its commands.

kombu builds a new `redis.Redis` for every command it sends outside its consumer's own connection
(`Channel.conn_or_acquire`): each publish, and on a worker each message's late acknowledgement and
its unacknowledged-index entry. Building one copies redis-py's table of response callbacks (about 250
entries): 8 % of the busy hour's worker CPU in callback mode (py-spy, bench/README.md). A client is
thread-safe (each command takes a connection from the channel's pool), so one serves them all; it is
built again if the channel's pool was replaced (after a fork, or a reconnection).

Used by `CELERY_BROKER_TRANSPORT` when CELERY_BROKER_URL is a redis:// URL (config/settings.py); a
rediss:// one keeps kombu's own transport, whose name is what turns TLS on.
"""

from kombu.transport import redis


class Channel(redis.Channel):
    _commands_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the consumer's BRPOP and pub/sub connections stay kombu's
            return super()._create_client(asynchronous=True)
        client = self._commands_client
        if client is None or client.connection_pool is not self.pool:
            client = self._commands_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
