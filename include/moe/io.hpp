// moe/io.hpp - umbrella header of the I/O layer: the strict JSON reader and safetensors files.
#pragma once

#include "moe/io/json.hpp"
#include "moe/io/safetensors.hpp"
