// moe/io/mapped_file.hpp - a read-only memory mapping of a whole file.
//
// The one place the library maps files (safetensors checkpoints, tokenizer.json): errors name
// the file and say what failed (NotFoundError for a missing file, IOError for the rest). A mapping
// is shared: copies keep it alive. An empty file maps to an empty span (mmap refuses 0 bytes).
//
// Mappings of 2 MiB and more are marked MADV_HUGEPAGE (a hint; ignored where the kernel cannot
// use it): pages the mapping reads from disk then come into the page cache as 2 MiB folios mapped
// by one TLB entry each, where 4 KiB pages cost a page walk every 4 KiB of a weight stream. A
// decode step of Qwen2-0.5B (988 MB of bf16 weights) takes 35 ms from a huge-page mapping and
// 42 ms from 4 KiB pages (Zen 5, 1 thread; docs/lm.md "Page size"). Pages already cached as 4 KiB
// pages (a file just written or copied) stay so until the kernel drops them.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "moe/core/error.hpp"

namespace moe::io {

namespace detail {
/// "<what>: <strerror(err)>" for IOError messages.
inline std::string io_message(std::string_view what, int err) {
    return moe::detail::cat(what, ": ", std::generic_category().message(err));
}
}  // namespace detail

/// A whole file, mapped read-only.
struct MappedFile {
    std::string path;
    std::shared_ptr<const void> keep_alive;  ///< the mapping (null for an empty file)
    std::span<const std::byte> bytes;

    std::string_view text() const noexcept {
        return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }

    /// Maps `path`. Throws NotFoundError (no such file) or IOError (not a regular file, other
    /// OS failures).
    static MappedFile open(const std::filesystem::path& path) {
        MappedFile m;
        m.path = path.string();
        int fd = -1;
        do {
            fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            const int e = errno;
            if (e == ENOENT || e == ENOTDIR) throw NotFoundError(m.path, "no such file");
            throw IOError(m.path, detail::io_message("cannot open", e));
        }
        struct Closer {
            int fd;
            ~Closer() { ::close(fd); }
        } closer{fd};
        struct stat st {};
        if (::fstat(fd, &st) != 0) throw IOError(m.path, detail::io_message("cannot stat", errno));
        if (!S_ISREG(st.st_mode)) throw IOError(m.path, "not a regular file");
        if (static_cast<std::uint64_t>(st.st_size) > std::numeric_limits<std::size_t>::max())
            throw IOError(m.path, "file too large to map");
        const auto size = static_cast<std::size_t>(st.st_size);
        if (size == 0) return m;
        void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) throw IOError(m.path, detail::io_message("cannot mmap", errno));
#if defined(MADV_HUGEPAGE)
        if (size >= (std::size_t{2} << 20)) (void)::madvise(p, size, MADV_HUGEPAGE);  // a hint: its failure is harmless
#endif
        m.keep_alive = std::shared_ptr<const void>(p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
        m.bytes = std::span<const std::byte>(static_cast<const std::byte*>(p), size);
        return m;
    }
};

}  // namespace moe::io
