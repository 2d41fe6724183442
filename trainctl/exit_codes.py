"""What a trainctl exit code says happened; scripts branch on these."""

from __future__ import annotations

OK = 0
USAGE = 2  # argparse's code; also a bad option value, endpoint or connection file
UNAVAILABLE = 3  # no reply within the client's bounded retries (watch: never attached)
REFUSED = 4  # the trainer answered with an error (code and message are printed)
PROTOCOL = 5  # something arrived that is not a valid protocol message
CONDITION_NOT_MET = 6  # `watch --for` ended before `--until-state` was reached
