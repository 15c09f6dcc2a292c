// The State-independent core of meshbus::Saga: the tables of running and finished
// instances under one short-held lock, and each instance's steps under the
// instance's own lock, so different flows advance in parallel while one flow's
// steps stay in order. A step that throws, or whose record cannot be written,
// leaves its instance as it was. On a durable node each step ends with one
// Node::transact that writes the instance's record and the step's events (the
// outbox), before the step's requests are sent and its event is acknowledged.
#include "meshbus/detail/saga_core.hpp"

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include <algorithm>
#include <exception>
#include <span>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "meshbus/error.hpp"

namespace meshbus::detail {
namespace {

/// The layout of a stored instance (docs/store.md, "sagas").
constexpr std::uint32_t record_format = 1;
constexpr std::size_t record_fields = 15;
/// Event ids an instance remembers, to know an event delivered again after a crash.
constexpr std::size_t handled_kept = 64;
/// A time-out whose record could not be written is tried again this much later.
constexpr std::chrono::seconds retry_after{1};

SagaOptions with_clock(SagaOptions o) {
  if (!o.clock) o.clock = [] { return std::chrono::steady_clock::now(); };
  return o;
}

std::string what_of(std::exception_ptr failure) {
  try {
    std::rethrow_exception(std::move(failure));
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
std::chrono::system_clock::time_point from_unix_ms(std::int64_t ms) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::milliseconds(ms)));
}

/// A stored instance, decoded.
struct stored_instance {
  std::string saga;
  std::string correlation_id;
  std::uint8_t status = 0;
  std::string reason;
  std::string state;
  std::vector<std::string> notes;
  std::vector<std::string> compensations;
  std::vector<saga_request> requests;
  std::uint64_t next_request = 1;
  std::int64_t deadline_ms = 0;
  std::int64_t started_ms = 0;
  std::int64_t finished_ms = 0;
  std::vector<std::string> compensations_run;
  std::vector<std::string> handled;
};

/// Throws what msgpack throws (a type mismatch) or std::runtime_error.
stored_instance decode_record(std::string_view value) {
  msgpack::object_handle handle =
      msgpack::unpack(value.data(), value.size(), nullptr, nullptr,
                      msgpack::unpack_limit(1u << 20, 1u << 20, 256u << 20, 256u << 20, 0, 64));
  const msgpack::object& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size < record_fields) {
    throw std::runtime_error("not a saga record");
  }
  const auto* f = o.via.array.ptr;
  if (f[0].as<std::uint32_t>() != record_format) {
    throw std::runtime_error("saga record format " + std::to_string(f[0].as<std::uint32_t>()) +
                             " is not known to this meshbus (upgrade it)");
  }
  stored_instance r;
  f[1].convert(r.saga);
  f[2].convert(r.correlation_id);
  f[3].convert(r.status);
  f[4].convert(r.reason);
  if (f[5].type != msgpack::type::BIN) throw std::runtime_error("the state is not binary");
  r.state.assign(f[5].via.bin.ptr, f[5].via.bin.size);
  f[6].convert(r.notes);
  f[7].convert(r.compensations);
  if (f[8].type != msgpack::type::ARRAY) throw std::runtime_error("the requests are not an array");
  for (std::uint32_t i = 0; i < f[8].via.array.size; ++i) {
    const auto& q = f[8].via.array.ptr[i];
    if (q.type != msgpack::type::ARRAY || q.via.array.size < 8 || q.via.array.ptr[3].type != msgpack::type::BIN) {
      throw std::runtime_error("a request is not [id, continuation, service, payload, type, version, timeout, flow]");
    }
    const auto* g = q.via.array.ptr;
    saga_request req;
    g[0].convert(req.id);
    g[1].convert(req.continuation);
    g[2].convert(req.service);
    req.payload.assign(g[3].via.bin.ptr, g[3].via.bin.size);
    g[4].convert(req.type_name);
    g[5].convert(req.type_version);
    req.timeout = std::chrono::milliseconds(g[6].as<std::int64_t>());
    g[7].convert(req.correlation_id);
    r.requests.push_back(std::move(req));
  }
  f[9].convert(r.next_request);
  f[10].convert(r.deadline_ms);
  f[11].convert(r.started_ms);
  f[12].convert(r.finished_ms);
  f[13].convert(r.compensations_run);
  f[14].convert(r.handled);
  if (r.status > static_cast<std::uint8_t>(SagaStatus::timed_out)) throw std::runtime_error("unknown status");
  return r;
}

}  // namespace

// What a step may change, kept to put back when it is rolled back.
struct saga_core::snapshot {
  std::vector<std::pair<std::string, saga_step_fn>> compensations;
  std::vector<saga_request> requests;
  std::uint64_t next_request = 1;
  std::deque<std::string> handled;
  std::size_t notes = 0;
  clock::time_point deadline{};
};

bool saga_step::durable() const noexcept { return core_.durable(); }

void saga_step::set_timeout(std::chrono::milliseconds from_now) {
  core_.set_deadline(instance_, core_.options().clock() + from_now);
}

void saga_step::compensate(std::string name, saga_step_fn action) {
  if (core_.durable() && !core_.has_compensation(name)) {
    throw error(errc::invalid_argument,
                fmt::format("saga '{}' keeps its instances in the node's durable log, where a closure cannot be "
                            "stored: declare compensation '{}' with Saga::compensation(name, step) before start() "
                            "(that one runs after a restart), or set SagaOptions::in_memory",
                            core_.name(), name));
  }
  instance_.compensations.emplace_back(std::move(name), std::move(action));
}

void saga_step::compensate(std::string name) {
  if (!core_.has_compensation(name)) {
    throw error(errc::invalid_argument,
                fmt::format("saga '{}' has no compensation named '{}': declare it with Saga::compensation(name, step) "
                            "before start()",
                            core_.name(), name));
  }
  instance_.compensations.emplace_back(std::move(name), saga_step_fn{});
}

void saga_step::request(saga_request r) {
  if (!core_.continuation_reply_type(r.continuation)) {
    throw error(errc::invalid_argument,
                fmt::format("saga '{}' has no continuation named '{}': declare it with Saga::on_result<Rep>(name, "
                            "step) before start()",
                            core_.name(), r.continuation));
  }
  r.id = instance_.next_request++;
  instance_.requests.push_back(r);
  effects_.requests.push_back(std::move(r));
}

saga_core::saga_core(Node& node, std::string name, SagaOptions options, instance_factory make)
    : node_(node),
      name_(std::move(name)),
      options_(with_clock(std::move(options))),
      make_(std::move(make)),
      durable_(node.durable() && !options_.in_memory) {}

void saga_core::declare_compensation(std::string name, saga_step_fn step) {
  std::lock_guard lock(mu_);
  if (name.empty() || compensations_.contains(name)) {
    throw error(errc::invalid_argument,
                fmt::format("saga '{}': a compensation needs a name of its own ('{}')", name_, name));
  }
  compensations_.emplace(std::move(name), std::move(step));
}

void saga_core::declare_continuation(std::string name, std::string reply_type, request_sender send) {
  std::lock_guard lock(mu_);
  if (name.empty() || continuations_.contains(name)) {
    throw error(errc::invalid_argument,
                fmt::format("saga '{}': a continuation needs a name of its own ('{}')", name_, name));
  }
  continuations_.emplace(std::move(name), continuation{std::move(reply_type), std::move(send)});
}

bool saga_core::has_compensation(const std::string& name) const {
  std::lock_guard lock(mu_);
  return compensations_.contains(name);
}

std::optional<std::string> saga_core::continuation_reply_type(const std::string& name) const {
  std::lock_guard lock(mu_);
  const auto it = continuations_.find(name);
  if (it == continuations_.end()) return std::nullopt;
  return it->second.reply_type;
}

std::string saga_core::key_of(const std::string& correlation_id) const {
  return "$saga/" + name_ + "/" + correlation_id;
}

void saga_core::on_event(const Event& e, bool starts, const saga_step_fn& step) {
  const std::string key(e.correlation_id().empty() ? e.id() : e.correlation_id());
  for (;;) {
    std::shared_ptr<saga_instance> inst;
    bool created = false;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      if (const auto it = running_.find(key); it != running_.end()) {
        inst = it->second;
      } else if (finished_.contains(key)) {
        ++stats_.late;
        return;
      } else if (!starts) {
        ++stats_.unknown_flow;
        return;
      } else if (running_.size() >= options_.max_instances) {
        ++stats_.refused;
        throw poison_event("saga '" + name_ + "' already runs " + std::to_string(running_.size()) +
                           " instances (SagaOptions::max_instances): flow " + key + " was not started");
      } else {
        inst = make_();
        inst->correlation_id = key;
        inst->started_at = std::chrono::system_clock::now();
        set_deadline_locked(*inst, options_.clock() + options_.timeout);
        running_.emplace(key, inst);
        created = true;
      }
    }
    finished_call done;
    {
      std::unique_lock instance_lock(inst->mu);
      if (inst->gone) {
        if (inst->record) {  // finished while this event waited for it
          count([](SagaStats& s) { ++s.late; });
          return;
        }
        continue;  // its first step threw and it was dropped: look again
      }
      if (durable_ && std::find(inst->handled.begin(), inst->handled.end(), e.id()) != inst->handled.end()) {
        count([](SagaStats& s) { ++s.redelivered; });  // handled before a crash, its position not stored
        return;
      }
      try {
        done = run_step(*inst, &e, step, true);
      } catch (...) {
        if (created) {
          std::lock_guard lock(mu_);
          deadlines_.erase({inst->deadline, key});
          running_.erase(key);
          inst->gone = true;
        }
        throw;
      }
      if (created) count([](SagaStats& s) { ++s.started; });
    }
    done();
    return;
  }
}

std::shared_ptr<saga_instance> saga_core::running_instance(const std::string& key, bool count_late) {
  std::lock_guard lock(mu_);
  if (closed_) return nullptr;
  const auto it = running_.find(key);
  if (it == running_.end()) {
    if (count_late) ++stats_.late;
    return nullptr;
  }
  return it->second;
}

void saga_core::on_result(const std::string& key, const saga_step_fn& step) {
  const auto inst = running_instance(key, true);
  if (!inst) return;
  finished_call done;
  {
    std::lock_guard instance_lock(inst->mu);
    if (inst->gone) {
      count([](SagaStats& s) { ++s.late; });
      return;
    }
    done = run_step(*inst, nullptr, step, false);
  }
  done();
}

void saga_core::on_result(const std::string& key, std::uint64_t request_id, const saga_step_fn& step) {
  const auto inst = running_instance(key, true);
  if (!inst) return;
  finished_call done;
  {
    std::lock_guard instance_lock(inst->mu);
    const bool waiting = std::any_of(inst->requests.begin(), inst->requests.end(),
                                     [&](const saga_request& r) { return r.id == request_id; });
    if (inst->gone || !waiting) {
      count([](SagaStats& s) { ++s.late; });
      return;
    }
    done = run_step(*inst, nullptr, step, false, request_id);
  }
  done();
}

std::size_t saga_core::run_timeouts() {
  std::vector<std::shared_ptr<saga_instance>> due;
  saga_step_fn on_timeout;
  {
    std::lock_guard lock(mu_);
    if (closed_) return 0;
    const auto now = options_.clock();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      const auto it = running_.find(deadlines_.begin()->second);
      deadlines_.erase(deadlines_.begin());
      if (it == running_.end()) continue;
      it->second->deadline = clock::time_point::max();  // none, unless on_timeout gives it one
      due.push_back(it->second);
    }
    on_timeout = on_timeout_;
  }
  std::vector<finished_call> done;
  for (const auto& inst : due) {
    std::lock_guard instance_lock(inst->mu);
    {
      std::lock_guard lock(mu_);
      // Finished meanwhile, or a step moved its deadline after it was found due.
      if (inst->gone || inst->deadline != clock::time_point::max()) continue;
    }
    auto before = take(*inst);
    saga_effects effects;
    saga_step s(*this, *inst, nullptr, effects);
    if (on_timeout) {
      try {
        on_timeout(s);
      } catch (...) {
        count([](SagaStats& st) { ++st.step_errors; });
        inst->notes.push_back("on_timeout threw: " + what_of(std::current_exception()));
      }
    }
    auto end = s.finish();
    auto reason = std::move(s.reason());
    if (!end) {
      std::lock_guard lock(mu_);
      if (inst->deadline == clock::time_point::max()) {  // not given more time
        end = SagaStatus::timed_out;
        reason = "timed out: no final state within its deadline";
      }
    }
    auto call = conclude(*inst, before, effects, end, std::move(reason), false, false);
    if (inst->gone) done.push_back(std::move(call));
  }
  for (auto& d : done) d();
  return done.size();
}

void saga_core::set_on_timeout(saga_step_fn step) {
  std::lock_guard lock(mu_);
  on_timeout_ = std::move(step);
}

void saga_core::set_deadline(saga_instance& inst, clock::time_point at) {
  std::lock_guard lock(mu_);
  if (inst.gone) return;
  set_deadline_locked(inst, at);
}

void saga_core::set_deadline_locked(saga_instance& inst, clock::time_point at) {
  if (inst.deadline != clock::time_point{}) deadlines_.erase({inst.deadline, inst.correlation_id});
  inst.deadline = at;
  const bool earliest = deadlines_.empty() || at < deadlines_.begin()->first;
  deadlines_.insert({at, inst.correlation_id});
  if (earliest) timer_cv_.notify_all();
}

bool saga_core::find(const std::string& key, const std::function<void(const saga_instance&)>& read) const {
  std::shared_ptr<saga_instance> inst;
  {
    std::lock_guard lock(mu_);
    if (const auto it = running_.find(key); it != running_.end()) {
      inst = it->second;
    } else if (const auto f = finished_.find(key); f != finished_.end()) {
      inst = f->second;
    } else {
      return false;
    }
  }
  std::lock_guard instance_lock(inst->mu);
  read(*inst);
  return true;
}

SagaStats saga_core::stats() const {
  std::lock_guard lock(mu_);
  auto s = stats_;
  s.running = running_.size();
  return s;
}

void saga_core::run_timer() {
  std::unique_lock lock(mu_);
  while (!closed_) {
    if (deadlines_.empty()) {
      timer_cv_.wait(lock);
      continue;
    }
    const auto next = deadlines_.begin()->first;
    if (clock::now() < next) {
      timer_cv_.wait_until(lock, next);
      continue;
    }
    lock.unlock();
    run_timeouts();
    lock.lock();
  }
}

void saga_core::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  timer_cv_.notify_all();
}

saga_core::snapshot saga_core::take(saga_instance& inst) {
  inst.save_state();
  snapshot s;
  s.compensations = inst.compensations;
  s.requests = inst.requests;
  s.next_request = inst.next_request;
  s.handled = inst.handled;
  s.notes = inst.notes.size();
  std::lock_guard lock(mu_);
  s.deadline = inst.deadline;
  return s;
}

// Puts `inst` back as it was before the step (its lock held).
void saga_core::roll_back(saga_instance& inst, snapshot& before) {
  inst.restore_state();
  inst.compensations = std::move(before.compensations);
  inst.requests = std::move(before.requests);
  inst.next_request = before.next_request;
  inst.handled = std::move(before.handled);
  inst.notes.resize(std::min(inst.notes.size(), before.notes));
  std::lock_guard lock(mu_);
  if (before.deadline == clock::time_point::max()) {
    // A time-out that is rolled back has no deadline left: it is tried again shortly.
    set_deadline_locked(inst, options_.clock() + retry_after);
  } else if (inst.deadline != before.deadline) {
    set_deadline_locked(inst, before.deadline);
  }
}

// Runs one step of `inst`, whose lock the caller holds; a step that throws is rolled
// back (state, compensations, requests, deadline). `answered_request`: the request
// whose result this step handles, no longer awaited once it succeeded. Returns what
// to call once that lock is released (the on_finished callback).
saga_core::finished_call saga_core::run_step(saga_instance& inst, const Event* e, const saga_step_fn& step,
                                             bool rethrow, std::uint64_t answered_request) {
  auto before = take(inst);
  if (answered_request != 0) {
    std::erase_if(inst.requests, [&](const saga_request& r) { return r.id == answered_request; });
  }
  saga_effects effects;
  saga_step s(*this, inst, e, effects);
  try {
    step(s);
  } catch (...) {
    roll_back(inst, before);
    count([](SagaStats& st) { ++st.step_errors; });
    if (rethrow) throw;
    inst.notes.push_back("a step threw: " + what_of(std::current_exception()));
    return [] {};
  }
  if (durable_ && e != nullptr) {
    inst.handled.emplace_back(e->id());
    if (inst.handled.size() > handled_kept) inst.handled.pop_front();
  }
  return conclude(inst, before, effects, s.finish(), std::move(s.reason()), rethrow, true);
}

// After a step that returned: runs the compensations when it ended the instance,
// writes the record (durable sagas; a failure rolls everything back as if the step
// had thrown), then sends its requests and moves a finished instance to the
// finished table.
saga_core::finished_call saga_core::conclude(saga_instance& inst, snapshot& before, saga_effects& effects,
                                             std::optional<SagaStatus> finish_as, std::string reason, bool rethrow,
                                             bool is_step) {
  std::optional<saga_instance::final_record> record;
  if (finish_as) record = compensate_all(inst, *finish_as, std::move(reason), effects);
  if (durable_) {
    const auto failure = persist(inst, record ? &*record : nullptr, effects);
    if (!failure.empty()) {
      roll_back(inst, before);
      count([](SagaStats& st) {
        ++st.step_errors;
        ++st.store_failures;
      });
      const auto what = fmt::format("saga '{}', flow {}: a step was rolled back, its record could not be written: {}",
                                    name_, inst.correlation_id, failure);
      if (rethrow) throw error(errc::storage, what);
      inst.notes.push_back(what);
      return [] {};
    }
  }
  inst.drop_saved_state();
  if (is_step) count([](SagaStats& st) { ++st.steps; });
  for (const auto& r : effects.requests) send(inst, r);
  if (record) return finish(inst, std::move(*record));
  return [] {};
}

// The compensations of an instance that did not complete, newest first, each as a
// step (one that throws is noted and the others still run); the final record.
saga_instance::final_record saga_core::compensate_all(saga_instance& inst, SagaStatus status, std::string reason,
                                                      saga_effects& effects) {
  saga_instance::final_record record;
  record.status = status;
  record.reason = std::move(reason);
  if (status != SagaStatus::completed) {
    while (!inst.compensations.empty()) {
      auto [name, action] = std::move(inst.compensations.back());
      inst.compensations.pop_back();
      if (!action) {
        std::lock_guard lock(mu_);
        if (const auto it = compensations_.find(name); it != compensations_.end()) action = it->second;
      }
      if (!action) {
        count([](SagaStats& st) { ++st.step_errors; });
        inst.notes.push_back("compensation '" + name +
                             "' is not declared in this process (Saga::compensation): it did not run");
        continue;
      }
      saga_step s(*this, inst, nullptr, effects);
      try {
        action(s);
        record.compensations_run.push_back(name);
      } catch (...) {
        count([](SagaStats& st) { ++st.step_errors; });
        inst.notes.push_back("compensation '" + name + "' threw: " + what_of(std::current_exception()));
      }
    }
  }
  record.finished_at = std::chrono::system_clock::now();
  return record;
}

// Ends `inst` (its lock held) with `record`. Later events and results of its flow
// are counted late.
saga_core::finished_call saga_core::finish(saga_instance& inst, saga_instance::final_record record) {
  inst.compensations.clear();
  inst.requests.clear();
  const auto status = record.status;
  const auto why = record.reason;
  inst.record = std::move(record);
  const auto key = inst.correlation_id;
  {
    std::lock_guard lock(mu_);
    switch (status) {
      case SagaStatus::completed: ++stats_.completed; break;
      case SagaStatus::compensated: ++stats_.compensated; break;
      case SagaStatus::timed_out: ++stats_.timed_out; break;
      case SagaStatus::running: break;
    }
    if (inst.deadline != clock::time_point::max()) deadlines_.erase({inst.deadline, key});
    inst.gone = true;
    const auto it = running_.find(key);
    if (it != running_.end()) {
      auto kept = std::move(it->second);
      running_.erase(it);
      remember_locked(key, std::move(kept));
    }
  }
  if (!options_.on_finished) return [] {};
  return [cb = options_.on_finished, key, status, why] { cb(key, status, why); };
}

void saga_core::remember_locked(const std::string& key, std::shared_ptr<saga_instance> inst) {
  if (options_.finished_capacity == 0) {
    ++stats_.forgotten;
    return;
  }
  while (finished_order_.size() >= options_.finished_capacity) {
    finished_.erase(finished_order_.front());
    finished_order_.pop_front();
    ++stats_.forgotten;
  }
  finished_.emplace(key, std::move(inst));
  finished_order_.push_back(key);
}

// --- the durable log -----------------------------------------------------------------

std::string saga_core::encode(const saga_instance& inst, const saga_instance::final_record* record) const {
  std::int64_t deadline_ms = 0;
  if (record == nullptr) {
    clock::time_point deadline;
    {
      std::lock_guard lock(mu_);
      deadline = inst.deadline;
    }
    if (deadline != clock::time_point::max() && deadline != clock::time_point{}) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - options_.clock());
      deadline_ms = std::max<std::int64_t>(1, unix_ms(std::chrono::system_clock::now()) + left.count());
    }
  }
  const auto state = inst.encode_state();
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pk(buffer);
  pk.pack_array(static_cast<std::uint32_t>(record_fields));
  pk.pack(record_format);
  pk.pack(name_);
  pk.pack(inst.correlation_id);
  pk.pack(static_cast<std::uint8_t>(record != nullptr ? record->status : SagaStatus::running));
  pk.pack(record != nullptr ? record->reason : std::string());
  pk.pack_bin(static_cast<std::uint32_t>(state.size()));
  pk.pack_bin_body(state.data(), static_cast<std::uint32_t>(state.size()));
  pk.pack(inst.notes);
  const bool running = record == nullptr;
  pk.pack_array(running ? static_cast<std::uint32_t>(inst.compensations.size()) : 0);
  if (running) {
    for (const auto& c : inst.compensations) pk.pack(c.first);
  }
  pk.pack_array(running ? static_cast<std::uint32_t>(inst.requests.size()) : 0);
  if (running) {
    for (const auto& r : inst.requests) {
      pk.pack_array(8);
      pk.pack(r.id);
      pk.pack(r.continuation);
      pk.pack(r.service);
      pk.pack_bin(static_cast<std::uint32_t>(r.payload.size()));
      pk.pack_bin_body(r.payload.data(), static_cast<std::uint32_t>(r.payload.size()));
      pk.pack(r.type_name);
      pk.pack(r.type_version);
      pk.pack(static_cast<std::int64_t>(r.timeout.count()));
      pk.pack(r.correlation_id);
    }
  }
  pk.pack(inst.next_request);
  pk.pack(deadline_ms);
  pk.pack(unix_ms(inst.started_at));
  pk.pack(record != nullptr ? unix_ms(record->finished_at) : std::int64_t{0});
  pk.pack(record != nullptr ? record->compensations_run : std::vector<std::string>{});
  pk.pack_array(running ? static_cast<std::uint32_t>(inst.handled.size()) : 0);
  if (running) {
    for (const auto& id : inst.handled) pk.pack(id);
  }
  return std::string(buffer.data(), buffer.size());
}

std::string saga_core::persist(saga_instance& inst, const saga_instance::final_record* record, saga_effects& effects) {
  const auto key = key_of(inst.correlation_id);
  // A finished record makes room among the finished ones, on disk as in memory.
  std::vector<std::string> evicted;
  if (record != nullptr && options_.finished_capacity > 0) {
    std::lock_guard lock(mu_);
    const auto kept = finished_order_.size() + 1;
    for (std::size_t i = 0; kept > options_.finished_capacity && i < kept - options_.finished_capacity; ++i) {
      evicted.push_back(finished_order_[i]);
    }
  }
  try {
    const auto value = encode(inst, record);
    node_.transact([&](Transaction& tx) {
      if (record != nullptr && options_.finished_capacity == 0) {
        tx.erase(key);
      } else {
        tx.put(key, value);
      }
      for (const auto& k : evicted) tx.erase(key_of(k));
      for (const auto& p : effects.publications) {
        std::vector<Header> headers;
        headers.reserve(p.headers.size());
        for (const auto& [k, v] : p.headers) headers.push_back({k, v});
        PublishOptions o;
        o.event_id = p.event_id;
        o.type_name = p.type_name;
        o.type_version = p.type_version;
        o.correlation_id = p.correlation_id;
        o.causation_id = p.causation_id;
        o.content_type = p.content_type;
        o.headers = headers;
        tx.publish(p.topic, p.payload, o);
      }
    });
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

void saga_core::send(saga_instance& inst, const saga_request& r) {
  request_sender sender;
  {
    std::lock_guard lock(mu_);
    if (const auto it = continuations_.find(r.continuation); it != continuations_.end()) sender = it->second.send;
  }
  if (!sender) {
    count([](SagaStats& st) { ++st.step_errors; });
    inst.notes.push_back(fmt::format("continuation '{}' is not declared in this process (Saga::on_result): its "
                                     "request to '{}' was not sent",
                                     r.continuation, r.service));
    return;
  }
  try {
    sender(*this, inst.correlation_id, r);
  } catch (...) {
    count([](SagaStats& st) { ++st.step_errors; });
    inst.notes.push_back(
        fmt::format("the request to '{}' could not be sent: {}", r.service, what_of(std::current_exception())));
  }
}

void saga_core::restore() {
  if (!durable_) return;
  std::vector<std::pair<std::string, std::string>> records;
  try {
    records = node_.stored_range("$saga/" + name_ + "/");
  } catch (const error& e) {
    throw error(errc::storage, fmt::format("saga '{}' cannot read its stored instances: {}; erase that record "
                                           "(Node::transact, Transaction::erase) to start without it",
                                           name_, e.what()));
  }
  std::vector<std::shared_ptr<saga_instance>> finished;
  std::vector<std::string> dropped;
  {
    std::lock_guard lock(mu_);
    const auto now_ms = unix_ms(std::chrono::system_clock::now());
    const auto now = options_.clock();
    for (const auto& [key, value] : records) {
      stored_instance r;
      auto inst = make_();
      try {
        r = decode_record(value);
        if (r.saga != name_) continue;  // of a saga whose name goes on after a '/'
        inst->decode_state(r.state);
      } catch (const std::exception& e) {
        throw error(errc::storage,
                    fmt::format("saga '{}': the stored instance '{}' does not decode ({}): restore the State type it "
                                "was written with, or erase the record (Node::transact, Transaction::erase)",
                                name_, key, e.what()));
      }
      inst->correlation_id = r.correlation_id;
      inst->notes = std::move(r.notes);
      inst->started_at = from_unix_ms(r.started_ms);
      if (r.status != static_cast<std::uint8_t>(SagaStatus::running)) {
        saga_instance::final_record fr;
        fr.status = static_cast<SagaStatus>(r.status);
        fr.reason = std::move(r.reason);
        fr.compensations_run = std::move(r.compensations_run);
        fr.finished_at = from_unix_ms(r.finished_ms);
        inst->record = std::move(fr);
        inst->gone = true;
        finished.push_back(std::move(inst));
        continue;
      }
      for (auto& name : r.compensations) inst->compensations.emplace_back(std::move(name), saga_step_fn{});
      inst->requests = std::move(r.requests);
      inst->next_request = r.next_request;
      inst->handled.assign(r.handled.begin(), r.handled.end());
      // The deadline was stored as wall-clock time: one that passed meanwhile is due now.
      const auto left = std::chrono::milliseconds(std::max<std::int64_t>(0, r.deadline_ms - now_ms));
      const auto at = r.deadline_ms == 0 ? now + options_.timeout : now + left;
      set_deadline_locked(*inst, at);
      running_.emplace(inst->correlation_id, std::move(inst));
      ++stats_.restored;
    }
    std::stable_sort(finished.begin(), finished.end(),
                     [](const auto& a, const auto& b) { return a->record->finished_at < b->record->finished_at; });
    const auto keep = options_.finished_capacity;
    for (std::size_t i = 0; i < finished.size(); ++i) {
      if (finished.size() - i > keep) {
        dropped.push_back(finished[i]->correlation_id);
        ++stats_.forgotten;
        continue;
      }
      remember_locked(finished[i]->correlation_id, finished[i]);
    }
  }
  if (dropped.empty()) return;
  try {
    node_.transact([&](Transaction& tx) {
      for (const auto& k : dropped) tx.erase(key_of(k));
    });
  } catch (const error&) {
    // Left for the next start, which drops them again.
  }
}

void saga_core::resend_requests() {
  struct waiting {
    std::shared_ptr<saga_instance> inst;
    saga_request request;
    clock::time_point give_up;
  };
  std::vector<waiting> todo;
  {
    std::vector<std::shared_ptr<saga_instance>> instances;
    {
      std::lock_guard lock(mu_);
      for (const auto& [key, inst] : running_) instances.push_back(inst);
    }
    const auto now = clock::now();
    for (const auto& inst : instances) {
      std::lock_guard instance_lock(inst->mu);
      for (const auto& r : inst->requests) todo.push_back({inst, r, now + r.timeout});
    }
  }
  // Right after a restart the mesh is still forming: each request waits for a live
  // instance of its service, at most its own timeout (then it fails as no_service).
  while (!todo.empty()) {
    const auto now = clock::now();
    std::erase_if(todo, [&](const waiting& w) {
      if (now < w.give_up && node_.instances(w.request.service).empty()) return false;
      std::lock_guard instance_lock(w.inst->mu);
      const bool awaited = std::any_of(w.inst->requests.begin(), w.inst->requests.end(),
                                       [&](const saga_request& r) { return r.id == w.request.id; });
      if (!w.inst->gone && awaited) send(*w.inst, w.request);
      return true;
    });
    std::unique_lock lock(mu_);
    if (todo.empty() || timer_cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return closed_; })) return;
  }
}

}  // namespace meshbus::detail
