/* contract.h: the constants of the determinism contract (docs/determinism.md).
 * Changing any of them changes bits, so it means a new contract version. */
#ifndef OPG_CONTRACT_H
#define OPG_CONTRACT_H

#define OPG_CONTRACT_VERSION 1

#define OPG_DOT_CHUNK 256        /* elements per dot-product chunk (section 4)     */
#define OPG_QCHUNK_BLOCKS 8      /* 32-blocks per quantized chunk = 256 elements   */
#define OPG_ATTN_KCHUNK 32       /* keys per online-softmax chunk (section 9)       */
#define OPG_ATTN_SEGMENT 1024    /* keys per attention segment, merged in order     */

#endif
