/* gguf.h: read-only GGUF (v2, v3) files, memory-mapped and fully validated.
 *
 * opg_gguf_open checks every count, string length, type, offset, alignment
 * and tensor extent before anything is used, so every accessor below is safe
 * on any file that opened. Hostile or truncated input gets OPG_ERR_FORMAT and
 * a message (opg_last_error) naming the problem and its byte offset.
 *
 * Ownership: the handle owns the mapping; every pointer returned by an
 * accessor (strings, array data, tensor data) points into it and is valid
 * until opg_gguf_close. Strings are NOT NUL-terminated: use the length.
 *
 * What "valid" means (beyond the GGUF spec, ggml's rules where it has one):
 *  - magic "GGUF", version 2 or 3, little-endian (a big-endian file, version 1
 *    or any other version: OPG_ERR_UNSUPPORTED);
 *  - keys and tensor names are non-empty and hold no NUL byte (so the
 *    C-string lookups below are unambiguous); duplicates are rejected; string
 *    values may hold any bytes (UTF-8 is not checked);
 *  - value types 0..12; arrays of arrays are rejected (as ggml does); bool
 *    values are 0 or 1;
 *  - general.alignment, when present, is a uint32 power of two >= 8
 *    (default 32); the data section starts at the end of the tensor infos rounded up to it;
 *  - tensors: 1..4 dims, every ne >= 1, element count fits int64, ne[0] a
 *    multiple of the type's block, type one of ggml's (F32 ... MXFP4, NVFP4,
 *    Q1_0), offset a multiple of the alignment, bytes inside the file, no two
 *    tensors overlapping (any order, gaps allowed);
 *  - counts are checked against the bytes left before anything is allocated,
 *    so memory used is proportional to the file's header (caps: 2^20 keys,
 *    2^20 tensors, beyond which OPG_ERR_LIMIT).
 * A file truncated or modified by another process while mapped is outside
 * this guarantee (SIGBUS): opg only maps files it owns.
 *
 * Thread safety: a handle is immutable after open; every accessor may be
 * called from several threads (opg_gguf_sha256 included). */
#ifndef OPG_GGUF_H
#define OPG_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

typedef struct opg_gguf opg_gguf;

/* Value types, GGUF's numbering (never renumbered). */
typedef enum {
    OPG_GGUF_UINT8 = 0, OPG_GGUF_INT8 = 1, OPG_GGUF_UINT16 = 2, OPG_GGUF_INT16 = 3,
    OPG_GGUF_UINT32 = 4, OPG_GGUF_INT32 = 5, OPG_GGUF_FLOAT32 = 6, OPG_GGUF_BOOL = 7,
    OPG_GGUF_STRING = 8, OPG_GGUF_ARRAY = 9, OPG_GGUF_UINT64 = 10, OPG_GGUF_INT64 = 11,
    OPG_GGUF_FLOAT64 = 12,
    OPG_GGUF_INVALID = -1, /* returned by opg_gguf_kv_type for a bad index */
} opg_gguf_type;

/* "uint8", "string", ...; "invalid" for anything else. Static string. */
const char *opg_gguf_type_name(opg_gguf_type t);

typedef struct {
    const char *name;     /* not NUL-terminated */
    size_t name_len;
    int n_dims;           /* 1..4 */
    int64_t ne[4];        /* elements per dimension, ne[0] fastest; unused dims are 1 */
    opg_dtype type;       /* GGML type id; known to GGML but not to opg (Q5_K, IQ*, ...)
                             means opg_dtype_block_elems(type) == 0: the model
                             loader reports it, the file still opens */
    uint64_t offset;      /* from the start of the data section */
    size_t size;          /* bytes */
    const void *data;     /* into the mapping */
} opg_gguf_tensor;

/* Every GGML type id (not only those opg computes): its name ("q5_K",
 * "iq2_xxs", ...; "unknown" for an id ggml does not define), and its block:
 * returns elements per block (0 when unknown) and sets *block_bytes (may be
 * NULL). For the model loader's messages and for tools. */
const char *opg_gguf_ggml_type_name(uint32_t ggml_type);
int opg_gguf_ggml_type_block(uint32_t ggml_type, size_t *block_bytes);

/* Opens and validates path (mmap, read-only, MAP_PRIVATE). On success *out
 * owns the file; on error *out is NULL and the status says why (opg_last_error
 * has details, starting with the path): OPG_ERR_IO with the errno text when it
 * cannot be opened or mapped, is a directory or not a regular file;
 * OPG_ERR_FORMAT for an empty file or bad contents. */
opg_status opg_gguf_open(const char *path, opg_gguf **out);
/* Same over bytes in memory (fuzzing, tests). The caller keeps data alive
 * and unchanged until close; nothing is copied. */
opg_status opg_gguf_open_memory(const void *data, size_t size, opg_gguf **out);
/* Unmaps and frees; NULL is a no-op. */
void opg_gguf_close(opg_gguf *g);

uint32_t opg_gguf_version(const opg_gguf *g);
size_t opg_gguf_file_size(const opg_gguf *g);
/* general.alignment (32 when absent). */
uint32_t opg_gguf_alignment(const opg_gguf *g);
/* File offset of the data section (tensor offsets count from here); the file
 * size when a file without tensors ends before it. */
size_t opg_gguf_data_offset(const opg_gguf *g);
/* SHA-256 of the whole file (libsodium), computed on first call and cached:
 * the model id, the same digest Hugging Face shows for the file. */
void opg_gguf_sha256(opg_gguf *g, uint8_t out[32]);

/* ---- metadata (key/value pairs) -------------------------------------------- */
int64_t opg_gguf_kv_count(const opg_gguf *g);
/* Index of key, or -1 (binary search over a sorted index). */
int64_t opg_gguf_find_key(const opg_gguf *g, const char *key);
/* Key of pair i (0 <= i < count; NULL and *len = 0 otherwise). */
const char *opg_gguf_kv_key(const opg_gguf *g, int64_t i, size_t *len);
opg_gguf_type opg_gguf_kv_type(const opg_gguf *g, int64_t i);

/* Typed getters by key. Integers of any integer type (and bool) convert to
 * int64 when they fit; float32/float64 to double. OPG_ERR_NOT_FOUND when the
 * key is absent, OPG_ERR_FORMAT when the type does not fit. */
opg_status opg_gguf_get_int(const opg_gguf *g, const char *key, int64_t *out);
opg_status opg_gguf_get_float(const opg_gguf *g, const char *key, double *out);
opg_status opg_gguf_get_bool(const opg_gguf *g, const char *key, int *out);
opg_status opg_gguf_get_str(const opg_gguf *g, const char *key, const char **s, size_t *len);
/* Arrays: element type and count; for non-string element types, data points
 * at count packed little-endian elements (possibly unaligned: read with memcpy);
 * for string arrays *data is NULL (use opg_gguf_get_array_str). elem_type and
 * data may be NULL. */
opg_status opg_gguf_get_array(const opg_gguf *g, const char *key, opg_gguf_type *elem_type,
                              uint64_t *count, const void **data);
/* i-th string of a string array, O(1) (offsets indexed at open). OPG_ERR_ARG
 * when i >= count, OPG_ERR_FORMAT when key is not an array of strings. */
opg_status opg_gguf_get_array_str(const opg_gguf *g, const char *key, uint64_t i,
                                  const char **s, size_t *len);

/* ---- tensors ----------------------------------------------------------------- */
int64_t opg_gguf_tensor_count(const opg_gguf *g);
/* Index of the tensor named name, or -1. */
int64_t opg_gguf_find_tensor(const opg_gguf *g, const char *name);
/* Fills *t for tensor i (0 <= i < count). */
opg_status opg_gguf_tensor_info(const opg_gguf *g, int64_t i, opg_gguf_tensor *t);
/* A hint that the bytes [p, p + bytes) of the file (tensor data the caller
 * has copied) are not needed in memory now: the whole pages inside them are
 * dropped from this process and read from the file again if touched. Nothing
 * changes for a file opened from memory or for bytes outside the file. */
void opg_gguf_drop_pages(const opg_gguf *g, const void *p, size_t bytes);

#endif
