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

"""Configuration options of the consumer, groups ``[consumer]``,
``[consumer_poll]`` and ``[consumer_database]``.

``[consumer_database]`` carries oslo.db's database options for the state
store; its ``connection`` defaults to a SQLite file under ``state_path``.
"""

import copy
import os

from oslo_config import cfg
from oslo_db import options as db_options

GROUP = 'consumer'
POLL_GROUP = 'consumer_poll'
DB_GROUP = 'consumer_database'

#: Default directory of the SQLite state store: the user's state
#: directory (XDG base directory specification).
DEFAULT_STATE_PATH = os.path.join(
    os.environ.get('XDG_STATE_HOME') or
    os.path.join(os.path.expanduser('~'), '.local', 'state'),
    'oslo-publish')
DEFAULT_STATE_CONNECTION = (
    'sqlite:///$consumer.state_path/consumer-state.sqlite')

_opts = [
    cfg.StrOpt('driver', default='oslo_publish',
               help='Datasource driver, by name in the consumer.drivers '
                    'namespace: oslo_publish (follow published streams) '
                    'or poll (periodic get_all of a source that cannot '
                    'publish).'),
    cfg.ListOpt('streams', default=[],
                help='Published streams to follow (oslo_publish driver).'),
    cfg.ListOpt('topics', default=['oslo_publish'],
                help='Notification topics the streams are published to.'),
    cfg.StrOpt('pool',
               help='Name of this consumer service\'s own durable queue '
                    '(an oslo.messaging listener pool). Every pool gets '
                    'every delta. Defaults to consumer-<host>.'),
    cfg.ListOpt('tables', default=[],
                help='Tables to mirror. Empty means every table the '
                     'stream publishes.'),
    cfg.ListOpt('indexes', default=[],
                help='Secondary indexes of the cache, as table.column '
                     '(e.g. instances.host).'),
    cfg.ListOpt('allowed_publishers', default=[],
                help='publisher_id values accepted. Empty accepts '
                     'oslo_publish.<stream> for every followed stream. '
                     'Messages from any other publisher are rejected.'),
    cfg.StrOpt('signing_key', secret=True,
               help='Shared secret of the publishers. When set, unsigned '
                    'or wrongly signed messages are rejected.'),
    cfg.IntOpt('max_message_bytes', default=4194304, min=1024,
               help='Largest accepted message; larger ones are rejected '
                    'as oversized.'),
    cfg.IntOpt('reorder_window', default=1000, min=1,
               help='Sequence numbers ahead of the applied position that '
                    'are buffered while an earlier one is missing. A '
                    'message further ahead is a gap at once.'),
    cfg.FloatOpt('gap_timeout', default=5.0, min=0.01,
                 help='Seconds a missing sequence number may take to '
                      'arrive before the stream is resynchronised.'),
    cfg.FloatOpt('ack_timeout', default=60.0, min=0.1,
                 help='Longest time a delta message is held '
                      'unacknowledged while its effect is not yet '
                      'persisted in the state store (waiting for a '
                      'predecessor, a resync or the store itself). A '
                      'message is acknowledged only once persisted or '
                      'deliberately discarded; past this time it is '
                      'returned to the broker for redelivery.'),
    cfg.StrOpt('receiver', default='poll',
               choices=[('poll', 'the driver\'s own listener, polled by '
                                 'one thread; a thread per stream '
                                 'processes, another acknowledges'),
                        ('listener', 'oslo.messaging\'s notification '
                                     'listener, one executor thread per '
                                     'waiting message')],
               help='How deltas are received. Both use the same queues, '
                    '[oslo_messaging_rabbit] options, connection '
                    'handling and delivery policy; poll costs less CPU '
                    'per message. poll falls back to listener when the '
                    'transport driver does not offer the poll-style '
                    'listener it uses.'),
    cfg.IntOpt('listener_threads', default=256, min=1, max=10000,
               help='With receiver = listener: executor threads of '
                    'oslo.messaging\'s notification listener. A '
                    'delta message holds its thread, unacknowledged, '
                    'until its effect is persisted, also while it waits '
                    'for a predecessor: the number of threads bounds how '
                    'many such messages can wait at once (when all '
                    'wait, the predecessor still queued behind them '
                    'arrives only through a resync or ack_timeout), and '
                    'so how many messages are applied per state-store '
                    'commit. The threads mostly wait; they are created '
                    'as messages come.'),
    cfg.IntOpt('max_batch_messages', default=1000, min=1,
               help='Most messages verified and reconciled together. '
                    'The listener threads queue their messages; one of '
                    'them at a time takes everything queued (in arrival '
                    'order, up to this many) and hands each stream\'s '
                    'messages to its reconciler in one turn: one cache '
                    'update, one handler dispatch and one state-store '
                    'submission for the batch. An idle stream handles '
                    'each message at once; batches form only while '
                    'messages arrive faster than they are handled. '
                    'With receiver = listener a '
                    'batch also holds at most half of listener_threads '
                    'messages, so that the next batch is verified and '
                    'applied while the previous one is being persisted.'),
    cfg.FloatOpt('inactivity_timeout', default=35.0, min=0.1,
                 help='Seconds without any message (delta or heartbeat) '
                      'after which a stream counts as dead and is '
                      'resynchronised. Must exceed the publisher\'s '
                      'heartbeat_interval.'),
    cfg.FloatOpt('heartbeat_interval', default=10.0, min=0.1,
                 help='The publisher\'s heartbeat_interval, in seconds. '
                      'consumer-status reports a stream not synced when '
                      'no heartbeat or delta was heard for twice this '
                      'long, or when its status record is that old (the '
                      'consumer is not running).'),
    cfg.FloatOpt('stop_timeout', default=1.0, min=0.1,
                 help='Seconds consumer-sync waits on SIGTERM/SIGINT for '
                      'the listener and reconcilers to finish before it '
                      'exits anyway (a snapshot in progress or a broker '
                      'poll can take longer). Safe: messages not yet '
                      'acknowledged are redelivered and recognised.'),
    cfg.FloatOpt('resync_interval', default=3600.0, min=0.0,
                 help='Seconds between periodic full resyncs, the backstop '
                      'that repairs changes capture cannot see. Jittered '
                      'by up to 10%. 0 disables.'),
    cfg.FloatOpt('resync_backoff_min', default=1.0, min=0.0,
                 help='First delay in seconds before retrying a failed '
                      'resync; doubles up to resync_backoff_max, with '
                      'jitter.'),
    cfg.FloatOpt('resync_backoff_max', default=60.0, min=0.0,
                 help='Largest delay in seconds between resync attempts.'),
    cfg.IntOpt('resyncs_per_minute', default=6, min=1,
               help='Rate limit of resyncs per stream.'),
    cfg.FloatOpt('snapshot_timeout', default=60.0, min=0.1,
                 help='Seconds to wait for one snapshot page from the '
                      'host.'),
    cfg.BoolOpt('persist_rows', default=True,
                help='Store mirrored rows in the state store, in the same '
                     'transaction as their position, so a restart resumes '
                     'without a new snapshot.'),
    cfg.IntOpt('handler_queue_size', default=10000, min=1,
               help='Bound of each change handler\'s queue. A handler '
                    'that falls this far behind drops events (counted).'),
    cfg.ListOpt('handlers', default=[],
                help='Change and notification handlers to load from the '
                     'consumer.handlers namespace.'),
    cfg.StrOpt('state_path', default=DEFAULT_STATE_PATH,
               sample_default='~/.local/state/oslo-publish',
               help='Directory of the default SQLite state store '
                    '(consumer-state.sqlite, created with the directory '
                    'on first use). Defaults to the user\'s state '
                    'directory ($XDG_STATE_HOME/oslo-publish, else '
                    '~/.local/state/oslo-publish); services set it to '
                    'their own, e.g. /var/lib/nova.'),
    cfg.DictOpt('exchanges', default={},
                help='Exchange of each followed stream, as stream:exchange '
                     '(the control_exchange of the publishing service, '
                     'e.g. nova:nova,neutron:neutron). Streams not listed '
                     'use this service\'s control_exchange.'),
    cfg.BoolOpt('gc_freeze_after_resume', default=False,
                help='After a restart has loaded the mirrored rows from '
                     'the state store, move every object alive in the '
                     'process to the garbage collector\'s permanent '
                     'generation for good (Python gc.freeze()): the rows '
                     'stay alive anyway. Without it they are only held '
                     'out of collections until the stream has caught up '
                     'with the deltas that waited during the restart, '
                     'and later full collections scan them again. '
                     'Reference cycles among the frozen objects are '
                     'never collected afterwards, which is why it is off '
                     'by default: turn it on for a dedicated consumer '
                     'process (consumer-sync) that owns its collector.'),
    cfg.BoolOpt('gc_freeze_after_sync', default=False,
                help='Once a stream is synced for the first time (its '
                     'snapshot installed, or its rows loaded from the '
                     'state store on a restart), move every object alive '
                     'in the process to the garbage collector\'s '
                     'permanent generation (Python gc.freeze()). The '
                     'cache, the modules and the connections then stay '
                     'out of the full collections, which otherwise stop '
                     'every thread of the process (the delivery of '
                     'deltas too) for as long as it takes to scan them '
                     'all (tens of milliseconds with a few hundred '
                     'thousand objects): it lowers the tail latency of '
                     'deltas. Reference cycles among the frozen objects '
                     'are never collected afterwards, which is why it is '
                     'off by default: turn it on for a dedicated consumer '
                     'process that owns its collector. Implies '
                     'gc_freeze_after_resume.'),
    cfg.BoolOpt('snapshot_durable_before_synced', default=False,
                help='Write an installed snapshot (its mirrored rows and '
                     'positions) to the state store before the cache shows '
                     'it and the stream reports synced. Off (the default), '
                     'the cache shows the snapshot and the stream is '
                     'synced as soon as it is read, and its rows are '
                     'written in the background, before any delta applied '
                     'after it; deltas are acknowledged only once that '
                     'write is done, and a crash before it restarts from '
                     'the state stored before the snapshot (a new initial '
                     'snapshot for a fresh consumer).'),
    cfg.BoolOpt('gc_tenure', default=False,
                help='While the consumer runs, move everything that '
                     'survives a full garbage collection to the '
                     'permanent generation (Python gc.freeze()), so '
                     'that the next full collections scan only what is '
                     'newer instead of the whole cache again each time '
                     'the heap grew by a quarter; once the frozen '
                     'objects have doubled, they are given back and the '
                     'next full collection scans everything (reference '
                     'cycles among them are collected then). It affects '
                     'the collector of the whole process, which is why '
                     'it is off by default in the library; consumer-sync, '
                     'a dedicated consumer process, turns it on unless '
                     'its configuration sets it. Turn it on for any '
                     'dedicated consumer process whose cache grows (new '
                     'rows kept coming in). See consumer.gc_tenure.'),
]

_poll_opts = [
    cfg.StrOpt('source', default='sql',
               help='get_all() plugin in the consumer.poll_sources '
                    'namespace.'),
    cfg.FloatOpt('interval', default=60.0, min=0.01,
                 help='Seconds between two get_all() polls.'),
    cfg.StrOpt('stream', default='poll',
               help='Stream name the polled deltas are reconciled under.'),
    cfg.StrOpt('connection', secret=True,
               help='Database URL read by the sql poll source.'),
    cfg.ListOpt('tables', default=[],
                help='Tables read by the sql poll source.'),
]

_default_opts = [
    cfg.StrOpt('pybasedir', default='.',
               deprecated_for_removal=True,
               deprecated_reason='Unused: the state store lives under '
                                 '[consumer] state_path.',
               help='Formerly the base directory for state files.'),
]


def register_opts(conf):
    """Register the consumer options (and oslo.db's) on ``conf``."""
    conf.register_opts(_default_opts)
    conf.register_opts(_opts, group=GROUP)
    conf.register_opts(_poll_opts, group=POLL_GROUP)
    conf.register_opts(db_options.database_opts, group=DB_GROUP)
    conf.set_default('connection', DEFAULT_STATE_CONNECTION, group=DB_GROUP)


def _state_db_opts():
    """oslo.db's options as the state store uses them."""
    opts = copy.deepcopy(db_options.database_opts)
    for opt in opts:
        if opt.dest == 'connection':
            opt.default = DEFAULT_STATE_CONNECTION
            opt.sample_default = DEFAULT_STATE_CONNECTION
            opt.help = ('SQLAlchemy URL of the consumer\'s state store '
                        '(positions, mirrored rows, stream status). Never '
                        'the service\'s own [database]. Defaults to a '
                        'SQLite file under [consumer] state_path.')
    return opts


def list_opts():
    return [(None, _default_opts), (GROUP, _opts), (POLL_GROUP, _poll_opts),
            (DB_GROUP, _state_db_opts())]
