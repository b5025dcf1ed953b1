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

"""Print the last stestr run as one plain line: 'N passed, N failed'."""

import re
import subprocess
import sys


def main():
    out = subprocess.run([sys.executable, '-m', 'stestr', 'last'],
                         capture_output=True, check=False, text=True).stdout
    counts = {}
    for name in ('Passed', 'Failed', 'Skipped'):
        match = re.search(r'^ - %s: (\d+)' % name, out, re.MULTILINE)
        counts[name] = int(match.group(1)) if match else 0
    print('%(Passed)d passed, %(Failed)d failed, %(Skipped)d skipped'
          % counts)


if __name__ == '__main__':
    main()
