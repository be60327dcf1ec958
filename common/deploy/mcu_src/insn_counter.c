/* A QEMU TCG plugin that counts executed guest instructions between pairs of marker functions.
 *
 * Arguments: begin=ADDR,end=ADDR (the marker functions' first instructions, hex or decimal), out=FILE,
 * and optionally layer_begin=ADDR,layer_end=ADDR, a second pair whose regions may lie inside the first
 * pair's (one per operator inside an Invoke()). Every executed instruction adds one to a counter (an
 * inline add translated into each instruction, so the count is exact whatever way a block is left);
 * entering a begin marker notes the counter, entering its end marker appends the difference to that
 * pair's list. At exit the plugin writes one line per closed region to FILE: "region N" for the
 * first pair, "layer N" for the second, each list in order, then "total N" for the whole run.
 * Written for T-RecX; built by common/deploy/mcu_build.py with the host compiler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

TRECX_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t executed;  /* instructions executed so far (one vCPU) */
static char out_path[4096];

struct pair {               /* one pair of markers and the regions it closed */
  const char *label;
  uint64_t begin_address, end_address;
  int have_begin, have_end;
  uint64_t start;           /* `executed` when the begin marker was entered */
  int open;
  uint64_t *counts;         /* closed regions' counts, in order */
  size_t n, capacity;
};
static struct pair pairs[2] = {{.label = "region"}, {.label = "layer"}};

static void on_begin(unsigned int vcpu, void *pair) {
  (void)vcpu;
  struct pair *p = pair;
  p->start = executed;
  p->open = 1;
}

static void on_end(unsigned int vcpu, void *pair) {
  (void)vcpu;
  struct pair *p = pair;
  if (!p->open) return;  /* an end marker without a begin: ignored */
  p->open = 0;
  if (p->n == p->capacity) {
    p->capacity = p->capacity ? 2 * p->capacity : 1024;
    p->counts = realloc(p->counts, p->capacity * sizeof *p->counts);
    if (!p->counts) { qemu_plugin_outs("insn_counter: out of memory\n"); exit(1); }
  }
  p->counts[p->n++] = executed - p->start;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    uint64_t address = qemu_plugin_insn_vaddr(insn);
    /* Both markers of a pair are instrumented alike, so a region's count does not depend on whether
       a callback runs before or after its own instruction's add. */
    for (int k = 0; k < 2; ++k) {
      struct pair *p = &pairs[k];
      if (!p->have_begin) continue;
      if (address == p->begin_address) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, p);
      if (address == p->end_address) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, p);
    }
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
  }
}

static void write_counts(qemu_plugin_id_t id, void *unused) {
  (void)id; (void)unused;
  FILE *out = fopen(out_path, "w");
  if (!out) { qemu_plugin_outs("insn_counter: cannot write the output file\n"); return; }
  for (int k = 0; k < 2; ++k) {
    for (size_t i = 0; i < pairs[k].n; ++i) fprintf(out, "%s %llu\n", pairs[k].label, (unsigned long long)pairs[k].counts[i]);
  }
  fprintf(out, "total %llu\n", (unsigned long long)executed);
  fclose(out);
}

static int parse_address(const char *text, uint64_t *value) {
  char *end = NULL;
  *value = strtoull(text, &end, 0);
  return end != text && *end == '\0';
}

TRECX_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    const char *arg = argv[i];
    if (strncmp(arg, "begin=", 6) == 0) pairs[0].have_begin = parse_address(arg + 6, &pairs[0].begin_address);
    else if (strncmp(arg, "end=", 4) == 0) pairs[0].have_end = parse_address(arg + 4, &pairs[0].end_address);
    else if (strncmp(arg, "layer_begin=", 12) == 0) pairs[1].have_begin = parse_address(arg + 12, &pairs[1].begin_address);
    else if (strncmp(arg, "layer_end=", 10) == 0) pairs[1].have_end = parse_address(arg + 10, &pairs[1].end_address);
    else if (strncmp(arg, "out=", 4) == 0 && strlen(arg + 4) < sizeof out_path) strcpy(out_path, arg + 4);
    else { qemu_plugin_outs("insn_counter: unknown argument\n"); return 1; }
  }
  if (!pairs[0].have_begin || !pairs[0].have_end || !out_path[0] || pairs[1].have_begin != pairs[1].have_end) {
    qemu_plugin_outs("insn_counter: needs begin=ADDR,end=ADDR,out=FILE (and both layer_begin and layer_end, or neither)\n");
    return 1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, write_counts, NULL);
  return 0;
}
