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

"""The demo host service's own models: hosts, instances and ports.

Realistic columns of the kinds an OpenStack service has (integer and UUID
keys, enums, timestamps with microseconds, Decimal, JSON, booleans, soft
delete), so the demo exercises the value encoding too.
"""

import enum

import sqlalchemy as sa
from sqlalchemy import orm

from oslo_publish import outbox

# Microsecond timestamps on MySQL/MariaDB too, so the mirror is exact.
Timestamp = outbox.Timestamp


class Base(orm.DeclarativeBase):
    pass


class HostState(enum.Enum):
    up = 'up'
    down = 'down'
    maintenance = 'maintenance'


class Host(Base):
    __tablename__ = 'hosts'

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    name = sa.Column(sa.String(64), nullable=False, unique=True)
    state = sa.Column(sa.Enum(HostState, name='host_state'),
                      nullable=False, default=HostState.up)
    vcpus = sa.Column(sa.Integer, nullable=False)
    memory_mb = sa.Column(sa.Integer, nullable=False)
    cpu_allocation_ratio = sa.Column(sa.Numeric(6, 2), nullable=False)
    created_at = sa.Column(Timestamp, nullable=False)
    updated_at = sa.Column(Timestamp)


class Instance(Base):
    __tablename__ = 'instances'

    uuid = sa.Column(sa.String(36), primary_key=True)
    display_name = sa.Column(sa.String(255), nullable=False)
    host = sa.Column(sa.String(64), index=True)
    vm_state = sa.Column(sa.String(32), nullable=False)
    vcpus = sa.Column(sa.Integer, nullable=False)
    memory_mb = sa.Column(sa.Integer, nullable=False)
    properties = sa.Column(sa.JSON)
    locked = sa.Column(sa.Boolean, nullable=False, default=False)
    created_at = sa.Column(Timestamp, nullable=False)
    updated_at = sa.Column(Timestamp)
    deleted = sa.Column(sa.Integer, nullable=False, default=0)


class Port(Base):
    __tablename__ = 'ports'

    network_id = sa.Column(sa.String(36), primary_key=True)
    mac = sa.Column(sa.String(17), primary_key=True)
    instance_uuid = sa.Column(sa.String(36), index=True)
    fixed_ip = sa.Column(sa.String(39))
    admin_state_up = sa.Column(sa.Boolean, nullable=False, default=True)
    created_at = sa.Column(Timestamp, nullable=False)


TABLES = ('hosts', 'instances', 'ports')
