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

"""A steady random workload on the demo models.

Several writer threads run transactions at a target rate: inserts,
updates, deletes, ORM bulk updates, primary-key changes, rolled-back
savepoints and rolled-back transactions. Each writer stamps the rows it
writes with the wall-clock time, so the consumer side can measure
commit-to-visible latency.
"""

import datetime
import decimal
import random
import threading
import time
import uuid

from oslo_log import log
import sqlalchemy as sa

from oslo_publish.demo import models

LOG = log.getLogger(__name__)

_STATES = ('active', 'stopped', 'paused', 'building', 'error')


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Counters(object):
    """Figures of the workload; guarded by ``lock``."""

    def __init__(self):
        self.lock = threading.Lock()
        self.committed = 0
        self.rolled_back = 0
        self.errors = 0

    def add(self, name, n=1):
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class Workload(object):
    """Random transactions against ``session_factory`` at ``rate`` tx/s."""

    def __init__(self, session_factory, rate, seed, writers=2):
        self.session_factory = session_factory
        self.rate = float(rate)
        self.seed = seed
        self.writers = writers
        self.counters = Counters()
        self._stop = threading.Event()
        self._threads = []

    # ------------------------------------------------------------ control

    def seed_data(self, hosts=8, instances=40):
        """Create an initial population, one transaction."""
        rnd = random.Random(self.seed)
        with self.session_factory() as session, session.begin():
            for i in range(hosts):
                session.add(self._new_host(rnd, 'compute-%03d' % i))
            session.flush()
            for _ in range(instances):
                inst = self._new_instance(rnd, 'compute-%03d'
                                          % rnd.randrange(hosts))
                session.add(inst)
                session.add(self._new_port(rnd, inst.uuid))
        self.counters.add('committed')

    def start(self):
        for n in range(self.writers):
            t = threading.Thread(target=self._run, args=(n,),
                                 name='demo-writer-%d' % n, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    # ------------------------------------------------------------ writers

    def _run(self, n):
        rnd = random.Random('%s-%d' % (self.seed, n))
        interval = self.writers / self.rate if self.rate > 0 else 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self._one(rnd)
            except Exception as exc:  # noqa: broad - keep the demo going
                # Deadlocks and lock timeouts are normal under concurrent
                # writers; the transaction was rolled back.
                self.counters.add('errors')
                LOG.debug('demo transaction failed: %s', exc)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def _one(self, rnd):
        roll = rnd.random()
        with self.session_factory() as session:
            session.begin()
            try:
                if roll < 0.30:
                    self._create(session, rnd)
                elif roll < 0.60:
                    self._update(session, rnd)
                elif roll < 0.72:
                    self._delete(session, rnd)
                elif roll < 0.80:
                    self._bulk_update(session, rnd)
                elif roll < 0.86:
                    self._change_key(session, rnd)
                elif roll < 0.93:
                    self._savepoint_rolled_back(session, rnd)
                else:
                    self._update(session, rnd)
                    session.rollback()
                    self.counters.add('rolled_back')
                    return
                session.commit()
                self.counters.add('committed')
            except Exception:
                session.rollback()
                raise

    def _pick(self, session, model, rnd):
        count = session.scalar(sa.select(sa.func.count()).select_from(model))
        if not count:
            return None
        return session.scalars(sa.select(model).offset(
            rnd.randrange(count)).limit(1)).first()

    def _create(self, session, rnd):
        host = self._pick(session, models.Host, rnd)
        inst = self._new_instance(rnd, host.name if host else None)
        session.add(inst)
        for _ in range(rnd.randint(1, 2)):
            session.add(self._new_port(rnd, inst.uuid))

    def _update(self, session, rnd):
        inst = self._pick(session, models.Instance, rnd)
        if inst is None:
            return self._create(session, rnd)
        inst.vm_state = rnd.choice(_STATES)
        inst.properties = {'tag': rnd.randrange(100),
                           'note': 'migrated' if rnd.random() < .3 else ''}
        inst.locked = not inst.locked
        inst.updated_at = utcnow()
        if rnd.random() < 0.3:
            host = self._pick(session, models.Host, rnd)
            if host is not None:
                inst.host = host.name
                host.updated_at = utcnow()
                host.cpu_allocation_ratio = decimal.Decimal(
                    rnd.randrange(100, 1600)) / 100

    def _delete(self, session, rnd):
        inst = self._pick(session, models.Instance, rnd)
        if inst is None:
            return
        session.execute(sa.delete(models.Port).where(
            models.Port.instance_uuid == inst.uuid))
        session.delete(inst)

    def _bulk_update(self, session, rnd):
        host = self._pick(session, models.Host, rnd)
        if host is None:
            return
        session.execute(
            sa.update(models.Instance)
            .where(models.Instance.host == host.name)
            .values(vm_state=rnd.choice(_STATES), updated_at=utcnow()))
        host.state = rnd.choice(list(models.HostState))
        host.updated_at = utcnow()

    def _change_key(self, session, rnd):
        port = self._pick(session, models.Port, rnd)
        if port is None:
            return
        port.network_id = str(uuid.UUID(int=rnd.getrandbits(128)))

    def _savepoint_rolled_back(self, session, rnd):
        self._update(session, rnd)
        nested = session.begin_nested()
        self._create(session, rnd)
        nested.rollback()

    # ------------------------------------------------------------ rows

    def _new_host(self, rnd, name):
        return models.Host(
            name=name, state=models.HostState.up,
            vcpus=rnd.choice((32, 48, 64)),
            memory_mb=rnd.choice((131072, 262144)),
            cpu_allocation_ratio=decimal.Decimal('16.00'),
            created_at=utcnow())

    def _new_instance(self, rnd, host):
        return models.Instance(
            uuid=str(uuid.UUID(int=rnd.getrandbits(128))),
            display_name='vm-%06d' % rnd.randrange(10 ** 6),
            host=host, vm_state='building',
            vcpus=rnd.choice((1, 2, 4, 8)),
            memory_mb=rnd.choice((512, 2048, 8192)),
            properties={'flavor': rnd.choice(('m1.small', 'm1.large'))},
            locked=False, created_at=utcnow(), updated_at=utcnow())

    def _new_port(self, rnd, instance_uuid):
        mac = ':'.join('%02x' % rnd.randrange(256) for _ in range(6))
        return models.Port(
            network_id=str(uuid.UUID(int=rnd.getrandbits(128))), mac=mac,
            instance_uuid=instance_uuid,
            fixed_ip='10.%d.%d.%d' % (rnd.randrange(256), rnd.randrange(256),
                                      rnd.randrange(1, 255)),
            admin_state_up=True, created_at=utcnow())
