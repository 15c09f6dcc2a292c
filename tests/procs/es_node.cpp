// A test program for replicated event stores. Three modes ("--mode"):
//  serve   an instance of the service "bank" (a data directory is expected) with
//          replicas = --replicas: accounts as aggregates, the command Deposit handled
//          on each account's owner. Prints "id <node id>" and, once it sees
//          --members instances, "ready"; runs until SIGTERM. With --self-append STREAM
//          it also appends to that account itself every 20 ms, printing
//          "self ok <version>" or "self fail <errc> <message>".
//  client  sends --commands Deposit commands round robin over --accounts accounts to
//          the command service "bank.command" (any instance; forwarded to the owner),
//          one at a time, never retried; prints "ok <account> <command> <version>" or
//          "fail <account> <command> <message>", then "done".
//  dump    opens the data directory offline and prints every event of every account
//          as "event <stream> <version> <command>", then "done".
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <meshbus/aggregate.hpp>

#include "tests/procs/proc_args.hpp"

using namespace std::chrono_literals;
using namespace meshbus;

namespace {

std::atomic<bool> terminated{false};
void on_term(int) { terminated = true; }

struct Deposit {
  static constexpr std::string_view event_name = "bank.deposit";
  static constexpr std::uint32_t event_version = 1;
  std::string account;
  std::uint64_t command = 0;  // unique per command: a duplicate shows
  std::int64_t cents = 0;
  MSGPACK_DEFINE_MAP(account, command, cents)
};
struct Deposited {
  static constexpr std::string_view event_name = "bank.deposited";
  static constexpr std::uint32_t event_version = 1;
  std::uint64_t command = 0;
  std::int64_t cents = 0;
  std::uint64_t version = 0;  // in the reply: the account's version after it
  MSGPACK_DEFINE_MAP(command, cents, version)
};
struct Account {
  std::int64_t balance = 0;
  std::uint64_t version = 0;
  MSGPACK_DEFINE_MAP(balance, version)
};

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int serve(const test::proc_args& args) {
  Node node(args.node_options("bank"));
  EventStoreOptions eo;
  eo.service = "bank";
  eo.replicas = static_cast<unsigned>(args.number("--replicas", 1));
  EventStore store(node, eo);
  Aggregate<Account> accounts(store, "account");
  accounts.apply<Deposited>([](Account& a, const Deposited& d) {
    a.balance += d.cents;
    ++a.version;
  });
  accounts.handle<Deposit, Deposited>([](const Deposit& d) { return d.account; },
                                      [](const Deposit& d, const Account& a, Changes& out) {
                                        Deposited e{d.command, d.cents, a.version + 1};
                                        out.emit(e);
                                        return e;
                                      });
  say("id " + node.id().to_string());
  const auto want = args.number("--members", 1);
  while (!terminated && store.members().size() < want) std::this_thread::sleep_for(20ms);
  say("ready");
  const auto self_stream = args.text("--self-append");
  std::uint64_t n = 0;
  while (!terminated) {
    if (self_stream.empty()) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    try {
      const auto v = store.append("account-" + self_stream, ExpectedVersion::any(),
                                  Deposited{1000000 + ++n, 1, 0});
      say("self ok " + std::to_string(v));
    } catch (const error& e) {
      say("self fail " + std::to_string(static_cast<int>(e.code_value())) + " " + e.what());
    }
    std::this_thread::sleep_for(20ms);
  }
  const auto s = store.stats();
  say("stats takeovers=" + std::to_string(s.takeovers) + " fenced=" + std::to_string(s.fenced) +
      " not_enough_replicas=" + std::to_string(s.not_enough_replicas) +
      " replicated_in=" + std::to_string(s.replicated_in));
  return 0;
}

int client(const test::proc_args& args) {
  Node node(args.node_options("client"));
  const auto commands = args.number("--commands", 1000);
  const auto accounts = args.number("--accounts", 10);
  const auto want = args.number("--members", 1);
  const auto deadline = std::chrono::steady_clock::now() + 30s;  // exactly --members instances live
  while (node.instances("bank.command").size() != want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  for (std::uint64_t c = 1; c <= commands && !terminated; ++c) {
    const auto account = std::to_string(c % accounts);
    try {
      const auto r =
          node.request<Deposit, Deposited>("bank.command", Deposit{account, c, 1}, {.timeout = 15s}).get();
      say("ok " + account + " " + std::to_string(c) + " " + std::to_string(r.version));
    } catch (const std::exception& e) {
      std::string why = e.what();
      for (auto& ch : why) {
        if (ch == '\n') ch = ' ';
      }
      say("fail " + account + " " + std::to_string(c) + " " + why);
    }
  }
  say("done");
  return 0;
}

int dump(const test::proc_args& args) {
  auto o = args.node_options("dump");
  Node node(o);
  EventStore store(node);
  for (std::uint64_t from = 1;;) {
    const auto page = store.read_all(from, 1000);
    if (page.empty()) break;
    for (const auto& e : page) {
      from = e.position + 1;
      say("event " + e.stream + " " + std::to_string(e.version) + " " + std::to_string(e.as<Deposited>().command));
    }
  }
  say("done");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGTERM, on_term);
  std::signal(SIGINT, on_term);
  test::proc_args args(argc, argv);
  try {
    const auto mode = args.text("--mode", "serve");
    if (mode == "serve") return serve(args);
    if (mode == "client") return client(args);
    if (mode == "dump") return dump(args);
    test::proc_args::fail("unknown --mode " + mode);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "es_node: %s\n", e.what());
    return 1;
  }
}
