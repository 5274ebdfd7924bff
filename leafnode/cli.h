/* cli.h - the leaf's commands: each talks to the running daemon over the
 * control socket in its state dir (control.h) and prints for people, or
 * JSON for scripts with --json. */
#ifndef CANOPY_CLI_H
#define CANOPY_CLI_H

/* Exit status of every command (canopy-leaf(1), EXIT STATUS). */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILED = 1,    /* the daemon answered: the operation failed */
  CLI_EXIT_USAGE = 2,     /* bad command line */
  CLI_EXIT_NO_DAEMON = 3, /* no daemon answers on the state dir's control socket */
};

#define CLI_COMMANDS "status, share, downloads, search, get, help"
/* For the daemon's --help. */
#define CLI_COMMANDS_HELP                                                                          \
  "Commands (each takes --state-dir DIR, --json and --help):\n"                                    \
  "  status                      the super node followed, shares, transfers\n"                     \
  "  share add|remove|list DIR   the shared folders\n"                                             \
  "  search TERMS...             search the overlay\n"                                             \
  "  get CONTENT_ID              download a file found by search\n"                                \
  "  downloads [list]            downloads, and pause|resume|cancel ID"

/* Runs the command named by argv[1] with the rest of argv, and returns its
 * exit status; -1 if argv[1] names no command (the daemon's options). */
int cli_main(int argc, char **argv);

#endif
