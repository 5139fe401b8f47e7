/* cmd_net.h: the opg commands that talk to the network (built with OPG_NETWORK). */
#ifndef OPG_CMD_NET_H
#define OPG_CMD_NET_H

int opg_cmd_submit(int argc, char **argv);
int opg_cmd_keygen(int argc, char **argv);
/* opg verify RECORD: a saved job record re-checked offline (cmd_verify.c). */
int opg_cmd_verify(int argc, char **argv);

#endif
