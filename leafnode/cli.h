/* cli.h - the leaf's commands that talk to a running daemon. */
#ifndef CANOPY_CLI_H
#define CANOPY_CLI_H

/* canopy-leaf search --state-dir DIR [--ttl N] [--json] [--wait MS] TERMS... */
int cli_search(int argc, char **argv);
/* canopy-leaf get --state-dir DIR CONTENT_ID [-o PATH] [--json] [--force] */
int cli_get(int argc, char **argv);
/* canopy-leaf status --state-dir DIR [--json] */
int cli_status(int argc, char **argv);

#endif
