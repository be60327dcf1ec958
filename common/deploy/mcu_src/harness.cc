// The T-RecX harness: runs exported int8 models in TensorFlow Lite Micro on an emulated Cortex-M.
//
// The models are linked in as the C arrays deploy.sh exports; trecx_models.h (generated per program by
// common/deploy/mcu_build.py) lists them with their roles and the operators to register. The host
// prepares in.bin (little-endian): "TRXI", version, sample count, the early-exit threshold (float32: the
// int8 code the early exit's top score must exceed, derived from rho by common/deploy/runtime.py), model count, each
// model's arena bytes, probe count and probe iteration counts, a profile flag, then per sample the int8 input of every
// model fed from the input (a standalone model or stage 1), in table order. The harness writes
// out.txt, one record per line (see mcu.py's parser). Every Invoke() runs between the marker calls
// that the instruction-counting plugin watches, and is announced by a REGION line just before, so the
// plugin's list of counts pairs with the REGION lines in order. With the profile flag, TFLM's profiler
// hooks also put a second pair of markers around every operator, and a LAYERS line after each
// Invoke() names its operators in order, pairing with the plugin's list of layer counts. Written for
// T-RecX.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" void trecx_mark_begin(void);
extern "C" void trecx_mark_end(void);
extern "C" void trecx_probe(uint32_t iterations);
extern "C" void trecx_layer_begin(void);
extern "C" void trecx_layer_end(void);

namespace {

enum Role { kStandalone = 0, kStage1 = 1, kStage2 = 2 };

struct TrecxModel {
  const char* name;
  const unsigned char* flatbuffer;
  int role;
  int input_position;
  int ee_position;   // stage 1: the early-exit softmax among its outputs
  int tap_position;  // stage 1: the tapped feature map (stage 2's input)
};

}  // namespace

#include "trecx_models.h"

namespace {

constexpr uint32_t kVersion = 3;
constexpr size_t kMaxProbes = 16;
constexpr uint32_t kMaxLayers = 512;

alignas(16) uint8_t arena_pool[TRECX_ARENA_POOL_BYTES];
using Storage = uint8_t[sizeof(tflite::MicroInterpreter)];
alignas(tflite::MicroInterpreter) Storage interpreter_storage[TRECX_MODEL_COUNT];
tflite::MicroInterpreter* interpreters[TRECX_MODEL_COUNT];
uint32_t invocations[TRECX_MODEL_COUNT];
tflite::MicroMutableOpResolver<TRECX_OP_COUNT> resolver;
FILE* out;

// Called by TFLM around every operator of an Invoke(). The operator names are kept and written after
// the Invoke() (WriteLayers), so that no output falls inside a counted region.
class LayerProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    if (n_ < kMaxLayers) tags_[n_] = tag;
    trecx_layer_begin();
    return n_++;
  }
  void EndEvent(uint32_t) override { trecx_layer_end(); }
  bool WriteLayers(const char* model) {  // false when more operators ran than the names kept
    if (n_ > kMaxLayers) return false;
    std::fprintf(out, "LAYERS %s", model);
    for (uint32_t i = 0; i < n_; ++i) std::fprintf(out, " %s", tags_[i]);
    std::fputc('\n', out);
    n_ = 0;
    return true;
  }

 private:
  const char* tags_[kMaxLayers];
  uint32_t n_ = 0;
};
LayerProfiler profiler;
bool profiling = false;

bool read_u32(FILE* in, uint32_t* value) { return std::fread(value, sizeof *value, 1, in) == 1; }

int fail(const char* what, const char* model, uint32_t value) {
  std::fprintf(out, "ERROR %s %s %lu\n", what, model, static_cast<unsigned long>(value));
  std::fclose(out);
  return 1;
}

void write_tensor(int model, int position, const TfLiteTensor* tensor) {
  static const char kDigits[] = "0123456789abcdef";
  char chunk[129];
  std::fprintf(out, "OUT %s %d ", kModels[model].name, position);
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(tensor->data.int8);
  for (size_t i = 0; i < tensor->bytes; i += 64) {
    size_t n = tensor->bytes - i < 64 ? tensor->bytes - i : 64;
    for (size_t k = 0; k < n; ++k) {
      chunk[2 * k] = kDigits[bytes[i + k] >> 4];
      chunk[2 * k + 1] = kDigits[bytes[i + k] & 15];
    }
    chunk[2 * n] = '\0';
    std::fputs(chunk, out);
  }
  std::fputc('\n', out);
}

void write_outputs(int model) {
  for (size_t k = 0; k < interpreters[model]->outputs_size(); ++k) {
    write_tensor(model, k, interpreters[model]->output(k));
  }
}

// Counted: the plugin's region holds the Invoke() call and the marker calls around it.
bool counted_invoke(int model) {
  ++invocations[model];
  std::fprintf(out, "REGION %s\n", kModels[model].name);
  trecx_mark_begin();
  TfLiteStatus status = interpreters[model]->Invoke();
  trecx_mark_end();
  return status == kTfLiteOk && (!profiling || profiler.WriteLayers(kModels[model].name));
}

int argmax(const TfLiteTensor* t) {  // over the last dimension, first maximum wins
  int best = 0;
  for (int i = 1; i < t->dims->data[t->dims->size - 1]; ++i) {
    if (t->data.int8[i] > t->data.int8[best]) best = i;
  }
  return best;
}

bool read_input(FILE* in, int model) {  // written again before every Invoke(): TFLM may reuse it
  TfLiteTensor* input = interpreters[model]->input(kModels[model].input_position);
  return std::fread(input->data.int8, 1, input->bytes, in) == input->bytes;
}

}  // namespace

int main() {
  out = std::fopen("out.txt", "w");
  if (out == nullptr) return 2;
  FILE* in = std::fopen("in.bin", "rb");
  char magic[4];
  uint32_t version = 0, samples = 0, n_models = 0, n_probes = 0, profile = 0;
  float ee_threshold = 0.0f;  // exit when the early exit's top int8 score is above it
  if (in == nullptr || std::fread(magic, 1, 4, in) != 4 || std::memcmp(magic, "TRXI", 4) != 0 ||
      !read_u32(in, &version) || version != kVersion || !read_u32(in, &samples) ||
      std::fread(&ee_threshold, sizeof ee_threshold, 1, in) != 1 || !read_u32(in, &n_models) || n_models != TRECX_MODEL_COUNT) {
    return fail("input", "in.bin", version);
  }
  uint32_t arena_bytes[TRECX_MODEL_COUNT];
  for (int m = 0; m < TRECX_MODEL_COUNT; ++m) {
    if (!read_u32(in, &arena_bytes[m])) return fail("input", "in.bin", m);
  }
  uint32_t probes[kMaxProbes];
  if (!read_u32(in, &n_probes) || n_probes > kMaxProbes) return fail("input", "in.bin", n_probes);
  for (uint32_t p = 0; p < n_probes; ++p) {
    if (!read_u32(in, &probes[p]) || probes[p] == 0) return fail("input", "in.bin", p);
  }
  if (!read_u32(in, &profile) || profile > 1) return fail("input", "in.bin", profile);
  profiling = profile == 1;
  for (uint32_t p = 0; p < n_probes; ++p) {
    std::fprintf(out, "REGION probe %lu\nREGION probe 0\n", static_cast<unsigned long>(probes[p]));
    trecx_probe(probes[p]);
  }

  TRECX_ADD_OPS(resolver);
  size_t offset = 0;
  int stage1 = -1, stage2 = -1;
  for (int m = 0; m < TRECX_MODEL_COUNT; ++m) {
    if (offset + arena_bytes[m] > sizeof arena_pool) return fail("arena_pool", kModels[m].name, arena_bytes[m]);
    interpreters[m] = new (interpreter_storage[m]) tflite::MicroInterpreter(
        tflite::GetModel(kModels[m].flatbuffer), resolver, arena_pool + offset, arena_bytes[m],
        nullptr, profiling ? &profiler : nullptr);
    if (interpreters[m]->AllocateTensors() != kTfLiteOk) return fail("allocate", kModels[m].name, arena_bytes[m]);
    std::fprintf(out, "MODEL %s %lu\n", kModels[m].name,
                 static_cast<unsigned long>(interpreters[m]->arena_used_bytes()));
    offset += (arena_bytes[m] + 15u) & ~15u;
    if (kModels[m].role == kStage1) stage1 = m;
    if (kModels[m].role == kStage2) stage2 = m;
  }
  if ((stage1 < 0) != (stage2 < 0)) return fail("pair", "stage1/stage2", 0);
  if (stage1 >= 0) {
    const TrecxModel& s1 = kModels[stage1];
    if (interpreters[stage1]->output(s1.tap_position)->bytes !=
        interpreters[stage2]->input(kModels[stage2].input_position)->bytes) {
      return fail("tap_size", kModels[stage2].name, interpreters[stage2]->input(0)->bytes);
    }
  }

  for (uint32_t i = 0; i < samples; ++i) {
    std::fprintf(out, "SAMPLE %lu\n", static_cast<unsigned long>(i));
    for (int m = 0; m < TRECX_MODEL_COUNT; ++m) {
      if (kModels[m].role == kStage2) continue;  // runs from stage 1's tapped feature map
      if (!read_input(in, m)) return fail("input_sample", kModels[m].name, i);
      if (!counted_invoke(m)) return fail("invoke", kModels[m].name, i);
      write_outputs(m);
      if (kModels[m].role == kStandalone) {
        std::fprintf(out, "CLASS %s %d\n", kModels[m].name, argmax(interpreters[m]->output(0)));
        continue;
      }
      const TfLiteTensor* ee = interpreters[m]->output(kModels[m].ee_position);
      const int early = argmax(ee);
      if (ee->data.int8[early] > ee_threshold) {  // exit: stage 2 never runs
        std::fprintf(out, "EXIT 0 %d\n", early);
        continue;
      }
      const TfLiteTensor* tap = interpreters[m]->output(kModels[m].tap_position);
      std::memcpy(interpreters[stage2]->input(kModels[stage2].input_position)->data.int8, tap->data.int8, tap->bytes);
      if (!counted_invoke(stage2)) return fail("invoke", kModels[stage2].name, i);
      write_outputs(stage2);
      std::fprintf(out, "EXIT 1 %d\n", argmax(interpreters[stage2]->output(0)));
    }
  }
  for (int m = 0; m < TRECX_MODEL_COUNT; ++m) {
    std::fprintf(out, "INVOKES %s %lu\n", kModels[m].name, static_cast<unsigned long>(invocations[m]));
  }
  std::fprintf(out, "END\n");
  std::fclose(out);
  std::fclose(in);
  return 0;
}
