# Copyright 2026 The oslo.publish Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Configuration options of the host middleware, group ``[oslo_publish]``.

Every option is registered by :func:`register_opts`; ``oslo_publish.opts``
collects them for ``oslo-config-generator``. Values are checked when the
middleware is installed (:func:`oslo_publish.install`), so a bad value fails
at start with the option's name.
"""

from oslo_config import cfg

GROUP = 'oslo_publish'

_opts = [
    cfg.BoolOpt('enabled', default=True,
                help='Capture and publish row changes. When false, '
                     'install() registers nothing and adds no cost.'),
    cfg.ListOpt('tables', default=[],
                help='Allow-list of table names whose committed changes are '
                     'published. A name that does not exist in the target '
                     'metadata or database fails install().'),
    cfg.ListOpt('exclude_columns', default=[],
                help='Columns that never leave the host, as table.column '
                     '(e.g. users.password_hash). They appear in no delta, '
                     'before-image or snapshot page.'),
    cfg.StrOpt('delivery', default='outbox',
               choices=[('outbox', 'Deltas are written to an outbox table '
                                   'in the same transaction and published '
                                   'by the relay. Durable.'),
                        ('direct', 'Deltas are queued in memory after '
                                   'commit and published by a background '
                                   'thread. Best effort: lost if the '
                                   'process dies or the queue is full.')],
               help='How captured deltas reach the bus.'),
    cfg.StrOpt('stream',
               help='Name of the published stream. Defaults to the '
                    'service name (the configuration project), then to '
                    'the program name. Consumers follow streams by name.'),
    cfg.ListOpt('topics', default=['oslo_publish'],
                help='Notification topics the deltas and heartbeats are '
                     'published to.'),
    cfg.FloatOpt('heartbeat_interval', default=10.0, min=0.1,
                 help='Seconds of idleness after which the relay '
                      'publishes a heartbeat carrying the stream\'s '
                      'current sequence number.'),
    cfg.IntOpt('batch_size', default=100, min=1, max=10000,
               help='Largest number of committed transactions the relay '
                    'publishes in one message.'),
    cfg.StrOpt('signing_key', secret=True,
               help='Shared secret. When set, every message carries an '
                    'HMAC-SHA256 signature over its canonical encoding.'),
    cfg.IntOpt('snapshot_page_size', default=1000, min=1, max=100000,
               help='Largest number of rows in one snapshot page. Host '
                    'memory for a snapshot is bounded by this, not by the '
                    'table size.'),
    cfg.IntOpt('max_concurrent_snapshots', default=2, min=1,
               help='Snapshots served at the same time. Further requests '
                    'are refused with a retryable error.'),
    cfg.FloatOpt('snapshot_idle_timeout', default=300.0, min=1.0,
                 help='Seconds after which an open snapshot that nobody '
                      'reads is closed and its transaction released.'),
    cfg.FloatOpt('snapshot_first_page_timeout', default=30.0, min=1.0,
                 help='Seconds after which an open snapshot whose first '
                      'page nobody asked for is closed and its transaction '
                      'released: the client that asked for it most likely '
                      'gave up before the answer came (a request delivered '
                      'late, e.g. after a host restart). At most '
                      'snapshot_idle_timeout.'),
    cfg.IntOpt('max_snapshots_per_client', default=1, min=1,
               help='Snapshots one consumer process (the client name of '
                    'its requests) may hold open at the same time, so a '
                    'misbehaving client cannot take every one of '
                    'max_concurrent_snapshots.'),
    cfg.BoolOpt('snapshot_server', default=True,
                help='Serve snapshot requests (an oslo.messaging RPC '
                     'server) from the process that runs the relay.'),
    cfg.BoolOpt('relay_in_process', default=True,
                help='Run the relay in a background thread of the host '
                     'process. Turn off when oslo-publish-relay runs as a '
                     'separate service.'),
    cfg.FloatOpt('relay_poll_interval', default=1.0, min=0.01,
                 help='Seconds between relay polls of the outbox when no '
                      'commit woke it (a backstop; commits wake it at '
                      'once).'),
    cfg.FloatOpt('relay_cpu_share', default=0.1, min=0.01, max=1.0,
                 help='Largest share of one CPU the relay (and the direct '
                      'delivery thread) spends publishing while the '
                      'service is busy: while transactions of the service '
                      'are in flight in its process now and during at '
                      'least half of the recent time (or, for wake-ups it '
                      'cannot attribute, while commits kept arriving '
                      'during the last cycle), the next cycle starts no '
                      'sooner than the CPU time the relay thread spent '
                      'on the last one (not its waits for the database '
                      'and the broker) divided by this share after it '
                      'began (see '
                      'relay_max_pause), or as soon as no transaction is '
                      'in flight any more. What commits meanwhile goes '
                      'into that cycle. Writers running back to back '
                      '(less than 1 ms between their transactions on '
                      'average) are waited for the whole spacing instead, '
                      'without waking the thread at every transaction. A '
                      'relay whose writers are idle or leave gaps '
                      'publishes a commit at once. 1.0 runs a cycle for '
                      'every wake-up at once.'),
    cfg.FloatOpt('relay_max_pause', default=0.02, min=0.0, max=1.0,
                 help='Upper bound in seconds of the pause relay_cpu_share '
                      'adds between two cycles (beyond the last cycle\'s '
                      'own duration), so that latency while the service '
                      'is busy stays bounded.'),
    cfg.FloatOpt('retry_max_backoff', default=30.0, min=0.1,
                 help='Cap in seconds of the jittered exponential backoff '
                      'between publish attempts while the broker is '
                      'unreachable.'),
    cfg.FloatOpt('outbox_retention', default=0.0, min=0.0,
                 help='Seconds that delivered outbox entries are kept '
                      'before they are deleted (0 deletes them as soon '
                      'as the broker confirmed them).'),
    cfg.IntOpt('direct_queue_size', default=10000, min=1,
               help='Bound of the in-memory queue of direct delivery. '
                    'Transactions that find it full are counted as '
                    'dropped.'),
    cfg.IntOpt('max_message_bytes', default=1048576, min=1024,
               help='Largest encoded message the relay publishes; larger '
                    'batches are split, and a single transaction larger '
                    'than this is published on its own.'),
    cfg.BoolOpt('reread_updated_rows', default=True,
                help='Read the after-image of rows updated through the ORM '
                     'back at commit (one SELECT per table, under the '
                     'transaction\'s row locks), so a column another '
                     'transaction changed since the object was loaded is '
                     'never published stale. Turn off only when rows are '
                     'never updated concurrently, or only after SELECT ... '
                     'FOR UPDATE; it saves that query per transaction.'),
    cfg.StrOpt('metadata',
               help='Import path "package.module:attribute" of the host '
                    'service\'s SQLAlchemy MetaData (or declarative base), '
                    'for oslo-publish-relay. With it the standalone relay '
                    'serves snapshots through the declared column types, '
                    'so every value is encoded as the host\'s own deltas '
                    'encode it. Without it the tables are reflected, '
                    'which loses what the database does not record '
                    '(an Interval or Uuid stored as DATETIME or CHAR '
                    'on MariaDB and SQLite).'),
    cfg.StrOpt('database_group', default='database',
               regex=r'^[A-Za-z_][A-Za-z0-9_]*$',
               help='Configuration group whose oslo.db ``connection`` '
                    'holds the published tables and the outbox, read by '
                    'oslo-publish-manage, oslo-publish-relay and '
                    'oslo-publish-status (e.g. placement_database for '
                    'placement, api_database for nova\'s API database). '
                    'The commands\' --database-group flag overrides it.'),
    cfg.StrOpt('capture', default='session',
               choices=[('session', 'Capture the changes made through the '
                                    'host\'s SQLAlchemy sessions, in the '
                                    'transaction (every database).'),
                        ('logical', 'Read the database\'s own change log '
                                    '(PostgreSQL logical decoding, '
                                    'MariaDB/MySQL row binlog): also sees '
                                    'writes that bypass the sessions. '
                                    'Needs delivery = outbox and '
                                    'oslo-publish-manage capture-setup.')],
               help='Where changes are captured. Both backends publish '
                    'the same wire format; see the "Capture backends" '
                    'page of the documentation.'),
    cfg.IntOpt('binlog_server_id', min=1, max=4294967295,
               help='With capture = logical on MariaDB/MySQL: the '
                    'server_id the binlog reader presents as a replica. '
                    'It must differ from every server\'s and every other '
                    'replica\'s (the server disconnects the older of two '
                    'connections with one id). Unset: derived from the '
                    'host name, stream and thread, in 1073741824 and '
                    'above.'),
]


def register_opts(conf):
    """Register the ``[oslo_publish]`` options on ``conf``."""
    conf.register_opts(_opts, group=GROUP)


def list_opts():
    return [(GROUP, _opts)]
