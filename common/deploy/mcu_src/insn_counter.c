/* A QEMU TCG plugin that counts executed guest instructions between two marker functions.
 *
 * Arguments: begin=ADDR,end=ADDR (the marker functions' first instructions, hex or decimal) and
 * out=FILE. Every executed instruction adds one to a counter (an inline add translated into each
 * instruction, so the count is exact whatever way a block is left); entering the begin marker notes
 * the counter, entering the end marker appends the difference to a list. At exit the plugin writes
 * one line per closed region to FILE: "region N", then "total N" for the whole run.
 * Written for T-RecX; built by common/deploy/mcu_build.py with the host compiler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

TRECX_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t executed;      /* instructions executed so far (one vCPU) */
static uint64_t region_start;  /* `executed` when the begin marker was entered */
static int region_open;
static uint64_t begin_address, end_address;
static char out_path[4096];
static uint64_t *regions;      /* closed regions' counts, in order */
static size_t n_regions, capacity;

static void on_begin(unsigned int vcpu, void *unused) {
  (void)vcpu; (void)unused;
  region_start = executed;
  region_open = 1;
}

static void on_end(unsigned int vcpu, void *unused) {
  (void)vcpu; (void)unused;
  if (!region_open) return;  /* an end marker without a begin: ignored */
  region_open = 0;
  if (n_regions == capacity) {
    capacity = capacity ? 2 * capacity : 1024;
    regions = realloc(regions, capacity * sizeof *regions);
    if (!regions) { qemu_plugin_outs("insn_counter: out of memory\n"); exit(1); }
  }
  regions[n_regions++] = executed - region_start;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    uint64_t address = qemu_plugin_insn_vaddr(insn);
    /* Both markers are instrumented alike, so a region's count does not depend on whether a
       callback runs before or after its own instruction's add. */
    if (address == begin_address) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
    if (address == end_address) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
  }
}

static void write_counts(qemu_plugin_id_t id, void *unused) {
  (void)id; (void)unused;
  FILE *out = fopen(out_path, "w");
  if (!out) { qemu_plugin_outs("insn_counter: cannot write the output file\n"); return; }
  for (size_t i = 0; i < n_regions; ++i) fprintf(out, "region %llu\n", (unsigned long long)regions[i]);
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
  int have_begin = 0, have_end = 0;
  for (int i = 0; i < argc; ++i) {
    const char *arg = argv[i];
    if (strncmp(arg, "begin=", 6) == 0) have_begin = parse_address(arg + 6, &begin_address);
    else if (strncmp(arg, "end=", 4) == 0) have_end = parse_address(arg + 4, &end_address);
    else if (strncmp(arg, "out=", 4) == 0 && strlen(arg + 4) < sizeof out_path) strcpy(out_path, arg + 4);
    else { qemu_plugin_outs("insn_counter: unknown argument\n"); return 1; }
  }
  if (!have_begin || !have_end || !out_path[0]) {
    qemu_plugin_outs("insn_counter: needs begin=ADDR,end=ADDR,out=FILE\n");
    return 1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, write_counts, NULL);
  return 0;
}
