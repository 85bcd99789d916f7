/* `stargzd mount …`: one layer mounted in the foreground (debugging, benchmarks). */
#ifndef STARGZD_MOUNT_CMD_H
#define STARGZD_MOUNT_CMD_H

/* argv[0] is "mount".  Returns the process exit code. */
int sg_mount_command(int argc, char **argv);

#endif
