// A driver for the fuzz targets where libFuzzer is not available (GCC builds,
// and so ./test): runs every input of the seed corpus, then random mutations
// of them (bit flips, byte changes, insertions, deletions, splices) for a
// bounded time. It has no coverage feedback, unlike libFuzzer (fuzz/run);
// it keeps every target exercised on every ./test run.
//
//   <target>_standalone [--seconds N] [--runs N] [--seed S] [--max-len N]
//                       DIR_OR_FILE...
//
// --runs N stops the mutation after N inputs (or --seconds, whichever comes
// first; --runs alone runs exactly N): with --seed, a repeatable run, as
// scripts/mutants uses.
//
// A path that is neither a directory nor a file, or a corpus with no input,
// is an error (exit 2), not an empty run.
//
// A failing input is written to ./standalone-crash-<target>-<seed> before
// the target aborts, so it can be replayed:
//   <target>_standalone <that file>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string* current_input = nullptr;
std::string crash_path;

void SaveCurrentInput() {
  if (current_input == nullptr || crash_path.empty()) return;
  std::ofstream out(crash_path, std::ios::binary);
  out.write(current_input->data(),
            static_cast<std::streamsize>(current_input->size()));
}

void Run(std::string& input) {
  current_input = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()),
                         input.size());
  current_input = nullptr;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

const char kInteresting[] = {'\0', '\xff', '"', '{',    '}',   '[',
                             ']',  ':',    ',', '0',    '9',   '-',
                             'e',  '\\',   ' ', '\x7f', '\x80'};

std::string Mutate(const std::vector<std::string>& corpus, std::mt19937_64& rng,
                   size_t max_len) {
  std::string s =
      corpus.empty() ? std::string() : corpus[rng() % corpus.size()];
  const int ops = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < ops; ++i) {
    const size_t at = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 7) {
      case 0:
        if (!s.empty()) s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
        break;
      case 1:
        if (!s.empty()) s[at] = static_cast<char>(rng());
        break;
      case 2:
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(at),
                 kInteresting[rng() % sizeof(kInteresting)]);
        break;
      case 3:
        if (!s.empty())
          s.erase(at, 1 + rng() % std::min<size_t>(16, s.size() - at));
        break;
      case 4:
        if (!s.empty()) {
          const size_t len = 1 + rng() % std::min<size_t>(32, s.size() - at);
          s.insert(rng() % (s.size() + 1), s.substr(at, len));
        }
        break;
      case 5:
        if (!corpus.empty()) {
          const std::string& other = corpus[rng() % corpus.size()];
          if (!other.empty()) {
            const size_t from = rng() % other.size();
            s = s.substr(0, at) + other.substr(from);
          }
        }
        break;
      default:
        if (!s.empty()) s[at] = kInteresting[rng() % sizeof(kInteresting)];
        break;
    }
  }
  if (s.size() > max_len) s.resize(max_len);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0;
  uint64_t runs = 0;  // 0: no count limit
  uint64_t seed = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count());
  size_t max_len = 4096;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--max-len" && i + 1 < argc) {
      max_len = std::strtoull(argv[++i], nullptr, 10);
    } else {
      paths.push_back(arg);
    }
  }
  const std::string target = std::filesystem::path(argv[0]).filename().string();
  crash_path = "standalone-crash-" + target + "-" + std::to_string(seed);
  // A failed FUZZ_CHECK aborts: keep the input that did it.
  std::signal(SIGABRT, [](int) {
    SaveCurrentInput();
    std::signal(SIGABRT, SIG_DFL);
    std::abort();
  });

  std::vector<std::string> corpus;
  for (const std::string& path : paths) {
    if (std::filesystem::is_directory(path)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& file : files) corpus.push_back(ReadFile(file));
    } else if (std::filesystem::is_regular_file(path)) {
      corpus.push_back(ReadFile(path));
    } else {
      // A mistyped corpus path would otherwise run as one empty input and
      // pass: the corpus must be there.
      std::cerr << target << ": " << path
                << " is neither a corpus directory nor a file\n";
      return 2;
    }
  }
  if (corpus.empty()) {
    std::cerr << target << ": no corpus inputs in";
    for (const std::string& path : paths) std::cerr << " " << path;
    std::cerr << "\n";
    return 2;
  }
  uint64_t executions = 0;
  for (std::string input : corpus) {
    Run(input);
    ++executions;
  }
  std::cout << target << ": " << corpus.size() << " corpus inputs ran";
  if (seconds > 0 || runs > 0) {
    std::cout << "; mutating with seed " << seed << std::flush;
    std::mt19937_64 rng(seed);
    const auto start = std::chrono::steady_clock::now();
    const auto end = seconds > 0
                         ? start + std::chrono::duration_cast<
                                       std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(seconds))
                         : std::chrono::steady_clock::time_point::max();
    uint64_t mutated = 0;
    while (std::chrono::steady_clock::now() < end &&
           (runs == 0 || mutated < runs)) {
      for (int i = 0; i < 64 && (runs == 0 || mutated < runs); ++i) {
        std::string input = Mutate(corpus, rng, max_len);
        Run(input);
        ++mutated;
      }
    }
    executions += mutated;
    const std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    std::cout << "; " << mutated << " mutated inputs in " << took.count()
              << " s";
  }
  std::cout << "; " << executions << " executions, no failure\n";
  return 0;
}
