// corio: asyncio for C++20. The umbrella header, re-exporting each layer (like asyncio/__init__.py).
#pragma once

#include "corio/core/async_generator.hpp"
#include "corio/core/errors.hpp"
#include "corio/core/event_loop.hpp"
#include "corio/core/log.hpp"
#include "corio/core/run.hpp"
#include "corio/core/sleep.hpp"
#include "corio/core/task.hpp"
#include "corio/core/task_handle.hpp"
#include "corio/flow/as_completed.hpp"
#include "corio/flow/gather.hpp"
#include "corio/flow/shield.hpp"
#include "corio/flow/task_group.hpp"
#include "corio/flow/wait.hpp"
#include "corio/flow/wait_for.hpp"
