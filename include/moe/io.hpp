// moe/io.hpp - umbrella header of the I/O layer: the strict JSON reader, whole-file mappings, safetensors files and
// checkpoint access by tensor name (moe/io/checkpoint.hpp).
#pragma once

#include "moe/io/checkpoint.hpp"
#include "moe/io/json.hpp"
#include "moe/io/mapped_file.hpp"
#include "moe/io/quantize.hpp"
#include "moe/io/safetensors.hpp"
