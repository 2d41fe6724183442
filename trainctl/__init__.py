"""trainctl: a command-line client of the chattrain protocol, and the Procfile restart supervisor."""
