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

"""Log-based capture (``[oslo_publish] capture = logical``).

Instead of watching the host's sessions, a reader decodes the database's
own change log (PostgreSQL logical decoding, MariaDB/MySQL row binlog),
keeps the allow-listed tables, drops excluded columns and hands each
committed transaction, in commit order, to the staging step; from there
the relay numbers and publishes exactly as for session capture, so a
consumer cannot tell which backend a stream uses.

Modules: :mod:`.base` (the interface between a reader and the rest),
one module per log format, and :mod:`.staging` (the durable mapping of
log positions to outbox entries).
"""
