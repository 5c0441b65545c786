// The inline-PTX pieces the tensor-core kernels share (kernels/binary_conv.cu, w1a16_conv.cu,
// w1a16_general.cu, stem_conv_mma.cu): warp-level MMA, ldmatrix and cp.async (PTX ISA: "Warp-level
// matrix instructions", "Data movement and conversion instructions"), sm_80 and later; mbarriers
// and TMA copies (sm_90); warpgroup MMA (sm_90a).
#pragma once
#include <cstdint>

namespace mdq::kernels::ptx {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// D += A·B, bf16 inputs, f32 accumulators (m16n8k16).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// D += popc(A AND B) over 256-bit rows (m16n8k256, b1; DESIGN.md E12).
__device__ __forceinline__ void mma_b1_and_popc(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Four 8x8 b16 matrices; this lane gives the shared-memory address of one row.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t smem_addr) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
#endif
}

// cp.async of 16, 8 or 4 bytes; valid == false writes zeros (src-size 0 reads nothing).
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
               "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async16_zfill_u32(uint32_t smem_addr, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async4_zfill(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
               "r"(valid ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async8_zfill(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
               "r"(valid ? 8 : 0) : "memory");
}
// The im2col gather's copy: BYTES (4 or 8) from row + word (the address is one mad.wide.u32,
// not a sign-extended 64-bit index), or zeros when !valid (ignore-src: nothing is read). No
// memory clobber: the copies are ordered by the commit / wait / fence asm around them, and a
// clobber would make the compiler reload every shared value after each copy.
template <int BYTES>
__device__ __forceinline__ void cp_async_gather(uint32_t smem_addr, const uint32_t* row, uint32_t word, bool valid) {
  asm volatile(
      "{\n .reg .pred p;\n .reg .u64 a;\n setp.eq.b32 p, %3, 0;\n mad.wide.u32 a, %2, 4, %1;\n"
      " cp.async.ca.shared.global [%0], [a], %4, p;\n}\n" ::"r"(smem_addr),
      "l"(row), "r"(word), "r"(valid ? 1 : 0), "n"(BYTES));
}
// 16 bytes of row + word (one mad.wide.u32 address) into registers, or zeros when !valid (nothing
// is read). For gathers whose shared-memory writes should be plain 16-byte stores: measured on an
// H200, a warp's scattered 16-byte cp.async cost 32 shared-memory wavefronts, a st.shared.v4 of
// 512 contiguous bytes 4.
__device__ __forceinline__ uint4 ldg_gather16(const uint32_t* row, uint32_t word, bool valid) {
  uint4 v;
  asm volatile(
      "{\n .reg .pred p;\n .reg .u64 a;\n setp.ne.b32 p, %5, 0;\n mad.wide.u32 a, %4, 4, %6;\n"
      " mov.b32 %0, 0;\n mov.b32 %1, 0;\n mov.b32 %2, 0;\n mov.b32 %3, 0;\n"
      " @p ld.global.nc.v4.u32 {%0, %1, %2, %3}, [a];\n}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "r"(word), "r"(valid ? 1 : 0), "l"(row));
  return v;
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// An arrival on the mbarrier at shared address bar, made when every cp.async this thread has
// issued so far has landed; its pending count rises by one now and falls when they land, so the
// phase cannot complete before (PTX ISA, "cp.async.mbarrier.arrive", without .noinc).
__device__ __forceinline__ void cp_async_mbarrier_arrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// ---- sm_90: mbarriers and TMA tensor copies (PTX ISA, "Parallel synchronization and
// communication instructions: mbarrier", "Data movement: cp.async.bulk.tensor"). Only in code
// built for sm_90 or later; elsewhere these compile to nothing and must not be called.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define MDQ_TMA_AVAILABLE 1
#endif

// An mbarrier of `count` arrivals at shared address bar (8-byte aligned), made visible to the
// async proxy (the TMA engine completes it); then a barrier before any other thread waits on it.
__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t count) {
#ifdef MDQ_TMA_AVAILABLE
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// This thread's arrival, announcing `bytes` that async copies will deliver to the barrier's phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
#ifdef MDQ_TMA_AVAILABLE
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
#endif
}
// This thread's arrival (release: its earlier shared-memory writes are visible to whoever waits
// on the phase).
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
#ifdef MDQ_TMA_AVAILABLE
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}
// Waits until the barrier's phase of parity `parity` (0, 1, 0, ... for its 1st, 2nd, 3rd use) completes.
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
#ifdef MDQ_TMA_AVAILABLE
  asm volatile(
      "{\n .reg .pred done;\n"
      "WAIT:\n mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      " @!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
#endif
}
// The box of a 4-D tensor map (a __grid_constant__ kernel parameter, CUtensorMap) at coordinates
// (x0, x1, x2, x3), innermost first, into shared memory at dst (128-byte aligned), elements outside
// the tensor zero; completes `bar`'s transaction bytes (the box's full size). The box's first
// element must sit at a 16-byte aligned address (x0 times the element size a multiple of 16,
// negative included): an unaligned start raised an illegal instruction on an H200.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const void* tensor_map, int x0, int x1, int x2, int x3,
                                            uint32_t bar) {
#ifdef MDQ_TMA_AVAILABLE
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(dst),
      "l"(tensor_map), "r"(x0), "r"(x1), "r"(x2), "r"(x3), "r"(bar)
      : "memory");
#endif
}

// Im2col form (a tensor map of cuTensorMapEncodeIm2col over an NHWC tensor, dims C, W, H, N):
// the map's pixelsPerColumn pixels from (w, h, n) on, each the channelsPerPixel channels from c of
// the pixel at filter offset (off_w, off_h); the pixels walk the map's bounding box at its
// traversal strides, W fastest, then H, then N (an implicit GEMM's rows in output-pixel order);
// elements outside the tensor zero. Completes `bar`'s transaction bytes (the whole box).
__device__ __forceinline__ void tma_load_im2col_4d(uint32_t dst, const void* tensor_map, int c, int w, int h, int n,
                                                   uint16_t off_w, uint16_t off_h, uint32_t bar) {
#ifdef MDQ_TMA_AVAILABLE
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
      "%5}], [%6], {%7, %8};\n" ::"r"(dst),
      "l"(tensor_map), "r"(c), "r"(w), "r"(h), "r"(n), "r"(bar), "h"(off_w), "h"(off_h)
      : "memory");
#endif
}

// ---- sm_90a: warpgroup MMA (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate").
// Only in code built for sm_90a (-gencode=arch=compute_90a,code=sm_90a), where
// __CUDA_ARCH_FEAT_SM90_ALL is defined; elsewhere these compile to nothing and must not be called.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MDQ_WGMMA_AVAILABLE 1
#endif

// All ones where a >= b, else 0 (false for NaN, as a >= b is): one set instruction, which the
// caller ANDs with its bit and ORs into a word (one LOP3) where a predicate and a select would
// take two more.
__device__ __forceinline__ uint32_t ge_mask(float a, float b) {
  uint32_t m;
  asm("set.ge.u32.f32 %0, %1, %2;\n" : "=r"(m) : "f"(a), "f"(b));
  return m;
}

// Byte permute of the 8 bytes {b, a} (a's bytes 0-3, b's 4-7): byte i of the result is the one
// nibble i of sel names (its low 3 bits), or, with the nibble's bit 3 set, that byte's sign bit
// copied into all 8 bits (the mode __byte_perm does not expose).
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
  return d;
}

// Shared-memory matrix descriptor, no swizzle: the operand is made of 8-row x 16-byte core
// matrices (each 128 contiguous bytes); lbo = bytes between core matrices adjacent in K,
// sbo = bytes between core matrices adjacent in M (or N). Addresses and offsets in units of 16 B.
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((smem_addr >> 4) & 0x3fffu) | static_cast<uint64_t>((lbo >> 4) & 0x3fffu) << 16 |
         static_cast<uint64_t>((sbo >> 4) & 0x3fffu) << 32;
}
// desc with its start address `units` 16-byte units further on. The start-address field (bits
// 0-13) of a shared address cannot overflow (shared memory < 256 KB), so this is a 32-bit add on
// the low word: a 64-bit add of a signed offset cost ptxas a sign extension, a carry chain and two
// R2UR moves for each wgmma of the W1A1 kernel's k loop (ncu, H200).
__device__ __forceinline__ uint64_t wgmma_desc_advance(uint64_t desc, uint32_t units) {
  return (desc & 0xffffffff00000000ull) | static_cast<uint32_t>(static_cast<uint32_t>(desc) + units);
}
// Shared-memory matrix descriptor of a K-major operand in the 128-byte swizzle (CUTLASS's
// Swizzle<3,4,3>): rows of 128 bytes, the 16-byte chunk c of row r stored at chunk c ^ (r % 8),
// from a 1024-byte aligned base; SBO = 1024 bytes between 8-row groups, LBO unused (1). A k16
// step of bf16 inside the 128-byte row is a start address 32 bytes further on (the hardware
// applies the XOR to the final address).
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t smem_addr) {
  return static_cast<uint64_t>((smem_addr >> 4) & 0x3fffu) | 1ull << 16 | (1024ull >> 4) << 32 | 1ull << 62;
}
__device__ __forceinline__ void wgmma_fence() {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Pins the accumulators' values at this point of the program: the compiler may not move their
// writes (zeroing) past it into a wgmma chain, where ptxas would have to wait for the wgmmas
// (C7519, C7520: serialized). Before the first wgmma and after the last wait (CUTLASS's
// warpgroup_fence_operand).
template <int N>
__device__ __forceinline__ void fence_operands(float (&d)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
}
// Makes this thread's generic-proxy shared-memory writes (st.shared, cp.async) visible to the
// async proxy that wgmma reads operands through; then a barrier, then the wgmma.
__device__ __forceinline__ void fence_proxy_async_shared() {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// D (+)= popc(A AND B), A 64 x 256 bits and B 256 x 80 bits from shared memory (K-major
// descriptors), s32 accumulators of the warpgroup (DESIGN.md E12). accumulate = false
// overwrites D. Lane 4g+t of warp w holds d[j][2h+e] = D[16w + 8h + g][8j + 2t + e].
// (N = 80, the smallest b1 shape above 64: a W1A1 slice's 64 channels plus a column of ones,
// which counts popc(A) per row, and 15 zero columns.)
__device__ __forceinline__ void wgmma_b1_m64n80k256(int32_t (&d)[10][4], uint64_t a_desc, uint64_t b_desc,
                                                    bool accumulate) {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %42, 0;\n"
      " wgmma.mma_async.sync.aligned.m64n80k256.s32.b1.b1.and.popc "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,"
      "%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39}, %40, %41, p;\n}\n"
      : "+r"(d[0][0]), "+r"(d[0][1]), "+r"(d[0][2]), "+r"(d[0][3]),
        "+r"(d[1][0]), "+r"(d[1][1]), "+r"(d[1][2]), "+r"(d[1][3]),
        "+r"(d[2][0]), "+r"(d[2][1]), "+r"(d[2][2]), "+r"(d[2][3]),
        "+r"(d[3][0]), "+r"(d[3][1]), "+r"(d[3][2]), "+r"(d[3][3]),
        "+r"(d[4][0]), "+r"(d[4][1]), "+r"(d[4][2]), "+r"(d[4][3]),
        "+r"(d[5][0]), "+r"(d[5][1]), "+r"(d[5][2]), "+r"(d[5][3]),
        "+r"(d[6][0]), "+r"(d[6][1]), "+r"(d[6][2]), "+r"(d[6][3]),
        "+r"(d[7][0]), "+r"(d[7][1]), "+r"(d[7][2]), "+r"(d[7][3]),
        "+r"(d[8][0]), "+r"(d[8][1]), "+r"(d[8][2]), "+r"(d[8][3]),
        "+r"(d[9][0]), "+r"(d[9][1]), "+r"(d[9][2]), "+r"(d[9][3])
      : "l"(a_desc), "l"(b_desc), "r"(accumulate ? 1 : 0));
#endif
}

// The 32 f32 accumulators of an m64n64 wgmma, d[8][4], as asm operands %0..%31.
#define MDQ_WGMMA_D64(d)                                                                                   \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), \
      "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
      "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
      "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
      "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])

// D += A·B, bf16 A (64 x 16) from registers and B (16 x 64) from shared memory (K-major
// descriptor, no transpose), f32 accumulators of the warpgroup. Warp w of the warpgroup gives rows
// 16w..16w+15 of A in mma.sync m16n8k16's A fragment (a[0] = (g, 2t..2t+1), a[1] = (g + 8, 2t..),
// a[2] = (g, 2t+8..), a[3] = (g + 8, 2t+8..)) and holds d[j][2h+e] = D[16w + 8h + g][8j + 2t + e],
// mma.sync's accumulators of n8 tile j: a warp's m16n8k16 code moves over with its fragments.
// A's registers must not change until the wgmma's group is waited for. (The tensor-core stem,
// kernels/stem_conv_mma.cu.)
__device__ __forceinline__ void wgmma_bf16_m64n64k16_rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b_desc) {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, 1, 0;\n"  // scale-d = 1: accumulate
      " wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
      : MDQ_WGMMA_D64(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc));
#endif
}

// The 64 f32 accumulators of an m64n128 wgmma, d[16][4].
#define MDQ_WGMMA_D128(d)                                                                                        \
  MDQ_WGMMA_D64(d), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]),    \
      "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), \
      "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), \
      "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), \
      "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])

// As wgmma_bf16_m64n64k16_rs, N = 128 (the sm_90a W1A16 kernel, kernels/w1a16_wgmma.cu).
__device__ __forceinline__ void wgmma_bf16_m64n128k16_rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b_desc) {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, 1, 0;\n"  // scale-d = 1: accumulate
      " wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 0;\n}\n"
      : MDQ_WGMMA_D128(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc));
#endif
}

// The 128 f32 accumulators of an m64n256 wgmma, d[32][4].
#define MDQ_WGMMA_D256(d) \
  MDQ_WGMMA_D128(d), "+f"(d[16][0]), "+f"(d[16][1]), "+f"(d[16][2]), "+f"(d[16][3]), "+f"(d[17][0]), \
      "+f"(d[17][1]), "+f"(d[17][2]), "+f"(d[17][3]), "+f"(d[18][0]), "+f"(d[18][1]), "+f"(d[18][2]), \
      "+f"(d[18][3]), "+f"(d[19][0]), "+f"(d[19][1]), "+f"(d[19][2]), "+f"(d[19][3]), "+f"(d[20][0]), \
      "+f"(d[20][1]), "+f"(d[20][2]), "+f"(d[20][3]), "+f"(d[21][0]), "+f"(d[21][1]), "+f"(d[21][2]), \
      "+f"(d[21][3]), "+f"(d[22][0]), "+f"(d[22][1]), "+f"(d[22][2]), "+f"(d[22][3]), "+f"(d[23][0]), \
      "+f"(d[23][1]), "+f"(d[23][2]), "+f"(d[23][3]), "+f"(d[24][0]), "+f"(d[24][1]), "+f"(d[24][2]), \
      "+f"(d[24][3]), "+f"(d[25][0]), "+f"(d[25][1]), "+f"(d[25][2]), "+f"(d[25][3]), "+f"(d[26][0]), \
      "+f"(d[26][1]), "+f"(d[26][2]), "+f"(d[26][3]), "+f"(d[27][0]), "+f"(d[27][1]), "+f"(d[27][2]), \
      "+f"(d[27][3]), "+f"(d[28][0]), "+f"(d[28][1]), "+f"(d[28][2]), "+f"(d[28][3]), "+f"(d[29][0]), \
      "+f"(d[29][1]), "+f"(d[29][2]), "+f"(d[29][3]), "+f"(d[30][0]), "+f"(d[30][1]), "+f"(d[30][2]), \
      "+f"(d[30][3]), "+f"(d[31][0]), "+f"(d[31][1]), "+f"(d[31][2]), "+f"(d[31][3])

// As wgmma_bf16_m64n64k16_rs, N = 256 (the workshop's warp-specialised W1A16 kernel,
// dev/kernels/w1a16_ws.cu).
__device__ __forceinline__ void wgmma_bf16_m64n256k16_rs(float (&d)[32][4], const uint32_t (&a)[4], uint64_t b_desc) {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, 1, 0;\n"  // scale-d = 1: accumulate
      " wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
      "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
      "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
      "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
      "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
      "}, {%128,%129,%130,%131}, %132, p, 1, 1, 0;\n}\n"
      : MDQ_WGMMA_D256(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc));
#endif
}

// The m64nNk16 register-A wgmma above whose N the accumulators give (d[N / 8][4]).
template <int NJ>
__device__ __forceinline__ void wgmma_bf16_k16_rs(float (&d)[NJ][4], const uint32_t (&a)[4], uint64_t b_desc) {
  static_assert(NJ == 8 || NJ == 16 || NJ == 32, "N = 64, 128 or 256");
  if constexpr (NJ == 8) wgmma_bf16_m64n64k16_rs(d, a, b_desc);
  else if constexpr (NJ == 16) wgmma_bf16_m64n128k16_rs(d, a, b_desc);
  else wgmma_bf16_m64n256k16_rs(d, a, b_desc);
}

// Warp specialisation (sm_90a): a warpgroup gives back registers down to N per thread, or waits
// until it may take N, from the CTA's pool (PTX ISA, "setmaxnreg"); N a multiple of 8 in 24..256,
// every warp of the warpgroup executing it.
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
#ifdef MDQ_WGMMA_AVAILABLE
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

// A barrier of `threads` threads (whole warps) on hardware barrier `id` (1..15; 0 is
// __syncthreads'), for a subset of the CTA's warps.
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace mdq::kernels::ptx
