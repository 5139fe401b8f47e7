/* replay_main.c: runs files through a libFuzzer target without libFuzzer,
 * so plain ctest (any compiler, also the Asan build) replays the checked-in
 * corpus. Usage: fuzz_<name>_replay FILE_OR_DIR...  Each input is read into
 * a buffer of exactly its size (ASan sees reads past the end). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return -1;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    int n = 0, bad = 0;
    for (int a = 1; a < argc; a++) {
        struct stat sb;
        if (stat(argv[a], &sb) != 0) {
            fprintf(stderr, "%s: not found\n", argv[a]);
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            bad |= run_file(argv[a]) != 0;
            n++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) return 1;
        char **names = NULL;
        size_t cnt = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (cnt == cap) {
                cap = cap ? 2 * cap : 64;
                char **nn = realloc(names, cap * sizeof *names);
                if (!nn) return 1;
                names = nn;
            }
            size_t len = strlen(argv[a]) + strlen(e->d_name) + 2;
            names[cnt] = malloc(len);
            if (!names[cnt]) return 1;
            snprintf(names[cnt++], len, "%s/%s", argv[a], e->d_name);
        }
        closedir(d);
        qsort(names, cnt, sizeof *names, cmp); /* a stable order: reproducible runs */
        for (size_t i = 0; i < cnt; i++) {
            bad |= run_file(names[i]) != 0;
            n++;
            free(names[i]);
        }
        free(names);
    }
    printf("replayed %d inputs\n", n);
    return bad || n == 0;
}
