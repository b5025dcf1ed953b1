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

"""Where a snapshot stands in the binlog (the watermark's cut).

:class:`CutMixin` gives the binlog :class:`~.binlog.Reader` the hooks
the snapshot server and the stager call: :meth:`~CutMixin.snapshot_cut`
(works in any process: it reads the binlog between the stream's staged
position and the snapshot's) and :meth:`~CutMixin.wait_visible`.
"""

import random
import time

import pymysql
from pymysqlreplication import event as binlog_event
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish.logcapture import base
from oslo_publish.logcapture import binlog_decode
from oslo_publish.logcapture import binlog_server


def staged_position(engine, stream):
    """The stream's staged position ('' when none)."""
    from oslo_publish import outbox
    table = outbox.log_positions
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.position).where(
            table.c.stream == stream)).scalar() or ''


def binlog_place(path, offset):
    """A binlog file and offset as a key that sorts in binlog order.

    The file's numeric extension is compared as a number (``.999999``
    before ``.1000000``).
    """
    base, _, number = path.rpartition('.')
    if number.isdigit():
        return (base, int(number), int(offset))
    return (path, -1, int(offset))


def _last_position(transactions):
    """The last position among ``transactions`` with changes, or None."""
    return max((tx.position for tx in transactions if tx.changes),
               default=None)


class CutMixin(object):
    """Snapshot cut and visibility of the binlog reader."""

    def cut_position(self, snapshot_conn):
        """The position of the last transaction visible to S, or ''.

        ``snapshot_conn`` (a SQLAlchemy Connection) holds S, opened with
        ``START TRANSACTION WITH CONSISTENT SNAPSHOT``: MariaDB then
        reports the binlog file and offset S corresponds to, which
        ``BINLOG_GTID_POS`` maps to the GTID of the last transaction
        before it. '' when the binlog holds no transaction yet.
        """
        status = dict(snapshot_conn.exec_driver_sql(
            "SHOW STATUS LIKE 'binlog_snapshot_%%'").fetchall())
        path = status.get('Binlog_snapshot_file')
        offset = status.get('Binlog_snapshot_position')
        if not path:
            raise binlog_server.PrerequisiteError(
                'log_bin', 'OFF',
                'the server reports no binlog position for the snapshot')
        gtids = snapshot_conn.exec_driver_sql(
            'SELECT BINLOG_GTID_POS(%s, %s)',
            (path, int(offset))).scalar()
        if not gtids:
            return ''
        return binlog_decode.position_of(
            binlog_decode.parse_gtid(gtids.split(',')[0]))

    def wait_visible(self, conn, transactions, timeout=60.0):
        """Wait until ``transactions`` are visible to new snapshots.

        MariaDB writes a transaction to the binlog (and may send it to a
        replica) before InnoDB makes it visible. Staging waits here, so
        that every entry the relay numbers before a snapshot S opens is
        seen by S: a consistent snapshot taken now must report a binlog
        position at or after the last of them.

        The streaming reader knows where in the binlog (file, end
        offset) it read the last transaction, and compares that with the
        snapshot's own file and offset, on a connection it keeps: three
        round trips a check (``START TRANSACTION WITH CONSISTENT
        SNAPSHOT``, ``SHOW STATUS``, ``ROLLBACK``) instead of a pool
        checkout and ``BINLOG_GTID_POS``. Without that place (another
        reader object), the GTIDs are compared.
        """
        wanted = _last_position(transactions)
        if wanted is None:
            return

        def failure():
            return exceptions.SnapshotError(
                'binlog transaction %s stays invisible' % wanted)

        at = self._end_of(wanted)
        if at is not None:
            base.wait_until(lambda: self._visible_at(at), timeout, failure)
            return
        with self.engine.connect() as check:
            base.wait_until(lambda: self._new_snapshot_sees(check, wanted),
                            timeout, failure)

    def visible_in(self, transactions, snapshot):
        """True when ``snapshot`` sees every one of ``transactions``.

        For the two-round-trip staging batch (:mod:`.staging_my`).

        :param snapshot: the :func:`binlog_place` of a consistent
            snapshot (the staging transaction's own); None: check on a
            new snapshot, on the reader's kept connection.
        """
        wanted = _last_position(transactions)
        if wanted is None:
            return True
        at = self._end_of(wanted)
        if snapshot is not None:
            return at is not None and snapshot >= at
        if at is not None:
            return self._visible_at(at)
        with self.engine.connect() as check:
            return self._new_snapshot_sees(check, wanted)

    def _new_snapshot_sees(self, check, wanted):
        """True when a snapshot opened now on ``check`` sees ``wanted``.

        ``check``: a SQLAlchemy Connection; ``wanted``: a GTID position.
        """
        check.exec_driver_sql('START TRANSACTION WITH CONSISTENT SNAPSHOT')
        try:
            return self.cut_position(check) >= wanted
        finally:
            check.rollback()

    def _end_of(self, position):
        """``(file, end offset)`` where the reader read ``position``."""
        lock = getattr(self, '_lock', None)
        places = getattr(self, '_file_pos', None)
        if lock is None or places is None:
            return None
        with lock:
            at = places.get(position)
        if at is None or at[0] is None or at[1] is None:
            return None
        return binlog_place(*at)

    def _visible_at(self, at):
        """True when a consistent snapshot taken now is at or after ``at``.

        On the kept connection (made again after an error).
        """
        check = getattr(self, '_visible_conn', None)
        if check is None or check.closed or check.invalidated:
            check = self._visible_conn = self.engine.connect()
        try:
            check.exec_driver_sql('START TRANSACTION WITH CONSISTENT SNAPSHOT')
            try:
                status = dict(check.exec_driver_sql(
                    "SHOW STATUS LIKE 'binlog_snapshot_%%'").fetchall())
            finally:
                check.rollback()
        except BaseException:
            self._visible_conn = None
            try:
                check.invalidate()
                check.close()
            except Exception:  # noqa: it is broken already
                pass
            raise
        path = status.get('Binlog_snapshot_file')
        offset = status.get('Binlog_snapshot_position')
        if not path or offset is None:
            return False
        return binlog_place(path, int(offset)) >= at

    def close_visible_check(self):
        """Give back the connection of the visibility checks."""
        check, self._visible_conn = getattr(
            self, '_visible_conn', None), None
        if check is not None:
            try:
                check.close()
            except Exception:  # noqa: a broken connection
                pass

    def snapshot_cut(self, snapshot_conn, timeout=60.0):
        """The watermark's cut for the snapshot S held by ``snapshot_conn``.

        Works in any process (the stager may run elsewhere): the binlog
        between the stream's staged position and S's position is read
        for the last transaction with published changes, and this waits
        until the stream's staged position reaches it. Returns
        ``visible(entry)``: True for the staged outbox entries whose
        log position (``position``) is at or before S's.
        """
        cut = self.cut_position(snapshot_conn)
        self.wait_staged_through(cut, timeout)

        def visible(entry):
            return entry.position is not None and entry.position <= cut
        visible.position = cut
        return visible

    def wait_staged_through(self, position, timeout):
        """Wait until the published transactions to ``position`` are staged.

        The stream's staged position (which :class:`~.staging.Stager`
        records) must reach the last of them.
        """
        deadline = time.monotonic() + timeout
        while True:
            staged = staged_position(self.engine, self.stream)
            if staged >= position:
                return staged
            if staged:
                try:
                    needed = self._last_published(staged, position,
                                                  deadline)
                except binlog_server.LogPositionLost:
                    needed = False   # the stager starts a new epoch
                if needed is None:
                    return staged
                if needed:
                    from oslo_publish.logcapture import staging
                    return staging.wait_staged(
                        self.engine, self.stream, needed,
                        max(deadline - time.monotonic(), 0.01))
            # Nothing staged yet (or the log lost): the stager records
            # its start position first.
            if time.monotonic() > deadline:
                raise exceptions.SnapshotError(
                    'the binlog reader of stream %s did not reach %s '
                    'within %ss (is oslo-publish-relay running?)'
                    % (self.stream, position, timeout))
            time.sleep(0.02)

    def _last_published(self, after, upto, deadline):
        """The last transaction with published changes in (after, upto].

        Reads that part of the binlog, up to the end of the transaction
        ``upto`` (which the binlog holds: it is the GTID of a committed
        transaction); None when there is none.
        """
        upto_seq = int(upto.split(' ', 1)[0])
        builder = binlog_decode.TransactionBuilder(
            self.tables, self.schema, self.engine.dialect,
            binlog_server.foreign_keys(self.engine, self.schema))
        stream = self._binlog_stream(
            binlog_decode.gtid_of(after) if after else '', blocking=True,
            server_id=random.randint(0x40000000, 0x7ffffffe),
            heartbeat=0.5)
        last = None
        try:
            for ev in stream:
                if time.monotonic() > deadline:
                    raise exceptions.SnapshotError(
                        'stream %s: the binlog up to %s was not read in '
                        'time' % (self.stream, upto))
                if isinstance(ev, binlog_event.MariadbGtidEvent) and \
                        ev.gtid_seq_no > upto_seq:
                    break
                done = self._feed(builder, stream, ev)
                if isinstance(done, base.LogTransaction) and done.changes:
                    last = done.position
                if done is not None and (
                        done if isinstance(done, str)
                        else done.position) >= upto:
                    break
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == \
                    binlog_server.ER_MASTER_FATAL_ERROR_READING_BINLOG:
                raise binlog_server.LogPositionLost(str(exc)) from exc
            raise
        finally:
            stream.close()
        return last
