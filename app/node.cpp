#include "app/node.hpp"

#include <cerrno>
#include <cstring>
#include <future>
#include <iostream>
#include <thread>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/gateway.hpp"
#include "actors/manager.hpp"
#include "actors/registry.hpp"
#include "actors/sink.hpp"
#include "actors/source.hpp"
#include "actors/supervisor.hpp"
#include "app/actor_views.hpp"
#include "app/shutdown.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/tags.hpp"
#include "net/http.hpp"
#include "net/routes.hpp"
#include "net/streams_api.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/stream_store.hpp"

namespace ebridge {

namespace {

constexpr auto shutdown_grace = std::chrono::seconds{10};

int migrate_or_report(const options& opts) {
  pg_connection db{opts.postgres_url, "ebridge-migrate"};
  auto applied = migrate(db);
  if (!applied) {
    log::error("migrations", "failed", {{"error", describe(applied.error())}});
    std::cerr << "ebridge: cannot migrate the database (postgres.url): "
              << error_message(applied.error()) << '\n';
    return exit_failure;
  }
  log::info("migrations", "done",
            {{"applied_now", std::to_string(applied->size())},
             {"known", std::to_string(known_migrations().size())}});
  return exit_ok;
}

/// Creates the data directory if needed and checks that it is writable.
caf::error prepare_data_dir(const std::string& dir) {
  std::string path;
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    path = dir.substr(0, pos);
    if (!path.empty() && ::mkdir(path.c_str(), 0750) != 0 && errno != EEXIST)
      return make_error(ec::invalid_config, "data-dir: cannot create " + path
                                              + ": " + std::strerror(errno));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return make_error(ec::invalid_config, "data-dir: " + dir
                                            + " is not a writable directory: "
                                            + std::strerror(errno));
  return caf::none;
}

} // namespace

int run_migrate(const options& opts) {
  return migrate_or_report(opts);
}

int run_ref(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::cerr << "ebridge ref: expected exactly one argument, a JSON object "
                 "of string tags, e.g. ebridge ref '{\"team\":\"infra\"}'\n";
    return exit_usage;
  }
  auto tags = parse_tags(args[0]);
  if (!tags) {
    std::cerr << "ebridge ref: " << error_message(tags.error()) << '\n';
    return exit_usage;
  }
  auto ref = source_ref(*tags);
  std::cout << "sourceRef " << ref << '\n'
            << "streamUrl " << stream_path(ref) << '\n'
            << "tags " << to_json(*tags) << '\n';
  return exit_ok;
}

/// Stream logs and readers' sockets take descriptors: take all the hard
/// limit allows (Debian's soft default is 1024). Returns the limit (0: none
/// known).
size_t raise_open_files_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    auto wanted = lim;
    wanted.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0)
      lim = wanted;
  }
  if (lim.rlim_cur < 16384)
    log::warn("node",
              "few file descriptors: idle stream logs are closed past "
              "store.max-open-files, but each reader holds a socket",
              {{"limit", std::to_string(lim.rlim_cur)}});
  return lim.rlim_cur == RLIM_INFINITY ? 0 : static_cast<size_t>(lim.rlim_cur);
}

/// Whether `host` only takes connections from this machine.
bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

int run_serve(const options& opts) {
  // No authentication exists yet: anyone who reaches the port reads and
  // writes everything. Only loopback, unless the operator says otherwise.
  if (!is_loopback(opts.http_listen.host)) {
    if (!opts.auth_insecure) {
      std::cerr << "ebridge: refusing to serve on " << opts.http_listen.host
                << " without authentication: anyone who reaches it could "
                   "read and write every stream; listen on loopback, or "
                   "give --auth.insecure=true to accept that\n";
      return exit_usage;
    }
    log::warn("node",
              "serving without authentication on a non-loopback "
              "address (--auth.insecure=true)",
              {{"http", opts.http_listen.host}});
  }
  auto fd_limit = raise_open_files_limit();
  if (auto err = prepare_data_dir(opts.data_dir)) {
    std::cerr << "ebridge: " << error_message(err) << '\n';
    return exit_usage;
  }
  if (auto rc = migrate_or_report(opts); rc != exit_ok)
    return rc;

  // Declared before the actor system so that it outlives it.
  io_runtime io{opts.http_threads};
  // After io: its writer's last callbacks may still post to io.
  stream_store::config store_cfg;
  store_cfg.directory = opts.data_dir;
  // Half the descriptors for logs; sockets, Postgres and the rest share
  // the other half.
  store_cfg.max_open_files = opts.store_max_open_files != 0
                               ? opts.store_max_open_files
                               : fd_limit / 2;
  auto opened = stream_store::open(store_cfg);
  if (!opened) {
    std::cerr << "ebridge: cannot open the stream store: "
              << error_message(opened.error()) << '\n';
    return exit_failure;
  }
  auto store = std::move(*opened);
  caf::actor_system_config cfg;
  register_types(cfg);
  cfg.set("scheduler.max-threads", opts.max_threads);
  // An idle worker spins on its queue 100 times, then (CAF's default) polls
  // it 500 more times 50 µs apart before it sleeps until woken: after every
  // message that is 25 ms of wake-ups, which on 2 cores took a third of the
  // CPU samples from the HTTP and store threads (and 10 polls still a
  // third of ebridge's own at 1,000 changes/s). Spin, then sleep: an
  // enqueue from outside wakes a sleeping worker at once.
  cfg.set("work-stealing.moderate-poll-attempts", size_t{0});
  caf::actor_system sys{cfg};
  // The gateway first: the supervisor tells it the actors it starts.
  auto gateway_handle = sys.spawn(gateway, node_actors{},
                                  opts.registry_timeout);
  source_config src_cfg;
  src_cfg.replication.postgres_url = opts.postgres_url;
  src_cfg.replication.slot = opts.source_slot;
  src_cfg.replication.publication = opts.source_publication;
  // The position this node confirms on the slot is written there first.
  src_cfg.replication.state_dir = opts.data_dir;
  src_cfg.idle_interval = opts.source_idle_interval;
  src_cfg.max_lag = opts.source_max_lag;
  src_cfg.idle_lag = opts.source_idle_lag;
  src_cfg.resume_wait = opts.source_resume_wait;
  src_cfg.down_after = opts.source_down_after;
  supervisor_config sup_cfg;
  sup_cfg.gateway = gateway_handle;
  sup_cfg.start = [&opts, src_cfg, store = store.get()](caf::actor_system& s) {
    node_actors a;
    a.registry = s.spawn(registry, opts.registry_pool_size,
                         postgres_registry_workers(opts.postgres_url));
    a.sink = s.spawn(sink, store);
    a.source = s.spawn(source, src_cfg);
    manager_config mgr_cfg;
    mgr_cfg.source = a.source;
    mgr_cfg.sink = a.sink;
    mgr_cfg.registry = a.registry;
    mgr_cfg.sweep_interval = opts.gc_sweep_interval;
    mgr_cfg.idle_ttl = opts.gc_idle_ttl;
    mgr_cfg.register_timeout = opts.register_timeout;
    a.manager = s.spawn(manager, mgr_cfg);
    return a;
  };
  auto supervisor_handle = sys.spawn(supervisor, std::move(sup_cfg));
  {
    // Its first answer comes after it started the actors and told the
    // gateway: requests from HTTP then find the gateway knowing them.
    caf::scoped_actor self{sys};
    self->request(supervisor_handle, caf::infinite, status_atom::value)
      .receive([](std::string&) {}, [](caf::error&) {});
  }
  // Every actor this node runs: the supervisor stops its actors and ends
  // after them.
  auto stop_actors = [&] {
    caf::anon_send_exit(supervisor_handle, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(gateway_handle, caf::exit_reason::user_shutdown);
  };
  streams_api_config api_cfg;
  api_cfg.long_poll_timeout = opts.long_poll_timeout;
  api_cfg.sse_keepalive = std::min(opts.long_poll_timeout,
                                   std::chrono::milliseconds{15000});
  streams_api streams{*store, io, api_cfg};
  actor_views views{gateway_handle};
  route_targets targets{&views, &streams,
                        route_policy{opts.http_cors_origins,
                                     opts.tenant_default,
                                     tag_limits{opts.tags_max_pairs,
                                                opts.tags_max_key_bytes,
                                                opts.tags_max_value_bytes}}};
  http_limits limits;
  limits.max_body = opts.http_max_body;
  http_server server{io,
                     [&targets](http_request req, http_responder respond) {
                       handle_request(targets, std::move(req),
                                      std::move(respond));
                     },
                     limits};
  auto port = server.listen(opts.http_listen.host, opts.http_listen.port);
  if (!port) {
    std::cerr << "ebridge: " << error_message(port.error()) << '\n';
    stop_actors();
    sys.await_all_actors_done();
    store.reset(); // as at shutdown: while the actor system exists
    return exit_usage;
  }
  std::promise<int> stop_signal;
  io.on_shutdown_signal(
    [&stop_signal](int sig) { stop_signal.set_value(sig); });
  io.start();
  log::info("node", "serving",
            {{"http", opts.http_listen.host + ":" + std::to_string(*port)},
             {"data_dir", opts.data_dir},
             {"threads", std::to_string(opts.max_threads)}});
  auto sig = stop_signal.get_future().get();
  log::info("node", "shutting down", {{"signal", std::to_string(sig)}});
  // Shutdown waits for actors, and an actor may wait on a database that
  // does not answer: a second signal, or the grace period, ends it hard.
  io.on_shutdown_signal([](int) {
    log::error("node", "second signal: exiting without a clean shutdown");
    std::_Exit(exit_failure);
  });
  std::thread{[] {
    std::this_thread::sleep_for(shutdown_grace);
    log::error("node", "shutdown took too long: exiting",
               {{"grace_s", std::to_string(shutdown_grace.count())}});
    std::_Exit(exit_failure);
  }}.detach();
  // The store was declared before the actor system, which would otherwise
  // die first; stop_node drains it while both still exist.
  stop_node(
    server,
    [&] {
      stop_actors();
      sys.await_all_actors_done();
    },
    io, store);
  log::info("node", "stopped");
  return exit_ok;
}

} // namespace ebridge
