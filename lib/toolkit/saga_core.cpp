// The State-independent core of meshbus::Saga: the tables of running and finished
// instances under one short-held lock, and each instance's steps under the
// instance's own lock, so different flows advance in parallel while one flow's
// steps stay in order. A step that throws leaves its instance as it was.
#include "meshbus/detail/saga_core.hpp"

#include <exception>
#include <string>
#include <utility>

#include "meshbus/error.hpp"

namespace meshbus::detail {
namespace {

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

}  // namespace

void saga_step::set_timeout(std::chrono::milliseconds from_now) {
  core_.set_deadline(instance_, core_.options().clock() + from_now);
}

saga_core::saga_core(Node& node, std::string name, SagaOptions options, instance_factory make)
    : node_(node), name_(std::move(name)), options_(with_clock(std::move(options))), make_(std::move(make)) {}

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
    saga_step s(*this, *inst, nullptr);
    if (on_timeout) {
      try {
        on_timeout(s);
      } catch (...) {
        count([](SagaStats& st) { ++st.step_errors; });
        inst->notes.push_back("on_timeout threw: " + what_of(std::current_exception()));
      }
    }
    if (s.finish()) {
      done.push_back(finish(*inst, *s.finish(), std::move(s.reason())));
      continue;
    }
    bool extended = false;
    {
      std::lock_guard lock(mu_);
      extended = inst->deadline != clock::time_point::max();
    }
    if (!extended) done.push_back(finish(*inst, SagaStatus::timed_out, "timed out: no final state within its deadline"));
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

// Runs one step of `inst`, whose lock the caller holds; a step that throws is rolled
// back (state, compensations, deadline). Returns what to call once that lock is
// released (the on_finished callback).
saga_core::finished_call saga_core::run_step(saga_instance& inst, const Event* e, const saga_step_fn& step,
                                             bool rethrow) {
  inst.save_state();
  const auto compensations = inst.compensations.size();
  clock::time_point deadline;
  {
    std::lock_guard lock(mu_);
    deadline = inst.deadline;
  }
  saga_step s(*this, inst, e);
  try {
    step(s);
  } catch (...) {
    inst.restore_state();
    inst.compensations.resize(compensations);
    {
      std::lock_guard lock(mu_);
      ++stats_.step_errors;
      if (inst.deadline != deadline) set_deadline_locked(inst, deadline);
    }
    if (rethrow) throw;
    inst.notes.push_back("a step threw: " + what_of(std::current_exception()));
    return [] {};
  }
  inst.drop_saved_state();
  count([](SagaStats& st) { ++st.steps; });
  if (!s.finish()) return [] {};
  return finish(inst, *s.finish(), std::move(s.reason()));
}

// Ends `inst` (its lock held): compensations unless completed, then the record and
// the counters. Later events and results of its flow are counted late.
saga_core::finished_call saga_core::finish(saga_instance& inst, SagaStatus status, std::string reason) {
  saga_instance::final_record record;
  record.status = status;
  record.reason = std::move(reason);
  if (status != SagaStatus::completed) {
    while (!inst.compensations.empty()) {
      auto [name, action] = std::move(inst.compensations.back());
      inst.compensations.pop_back();
      saga_step s(*this, inst, nullptr);
      try {
        action(s);
        record.compensations_run.push_back(name);
      } catch (...) {
        count([](SagaStats& st) { ++st.step_errors; });
        inst.notes.push_back("compensation '" + name + "' threw: " + what_of(std::current_exception()));
      }
    }
  }
  inst.compensations.clear();
  record.finished_at = std::chrono::system_clock::now();
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

}  // namespace meshbus::detail
