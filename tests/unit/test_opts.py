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

"""The options are discoverable the oslo.config way."""

import os

from oslo_config import cfg
import stevedore

from tests import base


class TestListOpts(base.TestCase):

    def _namespace(self, name):
        mgr = stevedore.NamedExtensionManager(
            'oslo.config.opts', names=[name], invoke_on_load=True)
        return dict((g or 'DEFAULT', opts) for g, opts in mgr[name].obj)

    def test_host_options_on_entry_point(self):
        """oslo_publish lists the options the issue names."""
        names = {o.name for o in self._namespace('oslo_publish')[
            'oslo_publish']}
        for required in ('enabled', 'tables', 'exclude_columns', 'delivery',
                         'stream', 'topics', 'heartbeat_interval',
                         'batch_size', 'signing_key', 'snapshot_page_size'):
            self.assertIn(required, names)

    def test_consumer_options_on_entry_point(self):
        """consumer lists its groups."""
        groups = self._namespace('consumer')
        self.assertIn('consumer', groups)
        self.assertIn('consumer_poll', groups)

    def test_signing_keys_are_secret(self):
        """Both signing keys are secret so they are never logged."""
        from consumer import options as copts
        from oslo_publish import options as hopts
        for opts in (hopts._opts, copts._opts):
            key = [o for o in opts if o.name == 'signing_key'][0]
            self.assertTrue(key.secret)

    def test_bad_delivery_value_names_option(self):
        """A bad choice in a config file fails with the option's name."""
        import os
        import tempfile

        from oslo_publish import options
        fd, path = tempfile.mkstemp(suffix='.conf')
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, 'w') as f:
            f.write('[oslo_publish]\ndelivery = carrier-pigeon\n')
        conf = cfg.ConfigOpts()
        options.register_opts(conf)
        conf([], default_config_files=[path])
        err = self.assertRaises(cfg.ConfigFileValueError,
                                lambda: conf.oslo_publish.delivery)
        self.assertIn('delivery', str(err))

    def test_state_store_group_is_listed(self):
        """consumer lists [consumer_database] with the SQLite default."""
        groups = self._namespace('consumer')
        conn = [o for o in groups['consumer_database']
                if o.dest == 'connection'][0]
        self.assertIn('$consumer.state_path', conn.default)

    def test_sample_shows_no_placeholder_paths(self):
        """No listed option shows a <Path>-style placeholder in samples."""
        for group, opts in self._namespace('consumer').items():
            for opt in opts:
                self.assertNotIn('<', str(opt.sample_default or ''),
                                 '%s.%s' % (group, opt.dest))

    def test_state_path_defaults_outside_the_working_directory(self):
        """The SQLite store lands under the user's state directory."""
        from consumer import options as copts
        conf = cfg.ConfigOpts()
        copts.register_opts(conf)
        conf([])
        self.assertTrue(os.path.isabs(conf.consumer.state_path))
        self.assertIn('oslo-publish', conf.consumer.state_path)
        self.assertTrue(conf.consumer_database.connection.startswith(
            'sqlite:///' + conf.consumer.state_path))

    def test_database_group_option_is_listed(self):
        """[oslo_publish] database_group is listed for the host commands."""
        names = {o.name for o in self._namespace('oslo_publish')[
            'oslo_publish']}
        self.assertIn('database_group', names)
