// A downstream program: includes moe the way a user would and uses it a little.
#include "consumer_config.hpp"  // #include <moe/moe.hpp> (MOE_CONSUMER_HEADER)

#include <cstdio>

int main() {
    const moe::Shape shape{2, 3, 4};
    if (shape.numel() != 24) {
        std::fprintf(stderr, "moe consumer: unexpected numel %lld\n", static_cast<long long>(shape.numel()));
        return 1;
    }
    std::printf("moe consumer: ok\n");
    return 0;
}
