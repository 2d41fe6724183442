"""trainctl: a command-line client of the chattrain protocol (the restart supervisor is `supervise`)."""
