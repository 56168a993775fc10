// The header compiles as C++17 and declares the functions with C linkage.
#include "lode_runtime.h"

#include <type_traits>

static_assert(std::is_standard_layout<lode_rt_options>::value, "C layout");
static_assert(sizeof(lode_rt_stats) == 72, "lode_rt_stats layout");

int main() {
    int (*open)(const char *, const lode_rt_options *, lode_rt_session *) = lode_rt_session_open;
    return open == nullptr;
}
