// AsyncGenerator lives in core (flow's as_completed returns one); this header keeps DESIGN.md's place.
#pragma once

#include "corio/core/async_generator.hpp"
