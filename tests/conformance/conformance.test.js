// The official Durable Streams server conformance suite, pointed at the
// server in CONFORMANCE_TEST_URL (run.sh starts ebridge there).
import { runConformanceTests } from "@durable-streams/server-conformance-tests";

runConformanceTests({
  baseUrl: process.env.CONFORMANCE_TEST_URL,
  longPollTimeoutMs: 20000,
});
