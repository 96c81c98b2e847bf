"""A level that exceeds this client's capacity: chipbench serve against the built-in mock server,
whose tokens come as fast as the client reads them (so the client is all there is to measure)."""
import sys
from chipbench.cli import main
from chipbench.measuring.mockserver import MockServer

with MockServer() as mock:
    sys.exit(main(["serve", "--backend", "openai:" + mock.url, "--model", "qwen3-0.6b", "--concurrency", "4,16",
                   "--requests", "64", "--prompt", "16", "--gen", "256", "--warmup", "1", "--out", sys.argv[1]]))
