/* prompt.h: a prompt given as a file (-f FILE; "-" is standard input), for
 * prompts longer than a command line holds (Linux: 128 KiB an argument). */
#ifndef OPG_TOOL_PROMPT_H
#define OPG_TOOL_PROMPT_H

#include <stddef.h>

/* Reads all of path ("-": standard input; a pipe or a process substitution
 * works too) into *out (NUL-terminated; the caller frees it). Returns 0, or
 * -1 after printing "CMD: ..." on stderr: it cannot be opened or read, it
 * holds more than max bytes, a NUL byte (a prompt is text) or nothing. */
int opg_tool_read_prompt(const char *cmd, const char *path, size_t max, char **out);

#endif
