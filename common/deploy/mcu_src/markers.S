/* Marker functions whose entry addresses the instruction-counting QEMU plugin watches (one pair
 * around each Invoke(), one around each operator when profiling), and a probe with a known
 * instruction count. Each marker is one instruction (bx lr), written in assembly so that
 * no compiler changes what a counted region holds. Written for T-RecX. */
    .syntax unified
    .thumb
    .text

    .global trecx_mark_begin
    .type trecx_mark_begin, %function
    .thumb_func
trecx_mark_begin:
    bx lr
    .size trecx_mark_begin, . - trecx_mark_begin

    .global trecx_mark_end
    .type trecx_mark_end, %function
    .thumb_func
trecx_mark_end:
    bx lr
    .size trecx_mark_end, . - trecx_mark_end

    .global trecx_layer_begin
    .type trecx_layer_begin, %function
    .thumb_func
trecx_layer_begin:
    bx lr
    .size trecx_layer_begin, . - trecx_layer_begin

    .global trecx_layer_end
    .type trecx_layer_end, %function
    .thumb_func
trecx_layer_end:
    bx lr
    .size trecx_layer_end, . - trecx_layer_end

/* void trecx_probe(uint32_t n), n >= 1: two counted regions. The first holds 2 * n + 2 instructions:
 * the begin marker's bx, n iterations of (subs, bne) and the bl to the end marker. The second, with
 * nothing between the markers, holds 2: the begin marker's bx and the bl to the end marker. */
    .global trecx_probe
    .type trecx_probe, %function
    .thumb_func
trecx_probe:
    push {r4, lr}
    movs r4, r0
    bl trecx_mark_begin
1:  subs r4, r4, #1
    bne 1b
    bl trecx_mark_end
    bl trecx_mark_begin
    bl trecx_mark_end
    pop {r4, pc}
    .size trecx_probe, . - trecx_probe
