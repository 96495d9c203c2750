"""Reading the vLLM server's state for the TTS service's status."""

import asyncio
import http.server
import threading

import pytest

from services.tts_gateway.llm_server import llm_server_state, read_metrics

PAGE = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="spark-llm"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="spark-llm"} 1.0
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="spark-llm"} 400.0
vllm:prefix_cache_queries_created{engine="0",model_name="spark-llm"} 1.79e+09
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="spark-llm"} 96.0
vllm:prefix_cache_hits_total{engine="1",model_name="spark-llm"} 4.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="spark-llm"} 1234.0
"""


def test_samples_are_summed_over_their_labels():
    assert read_metrics(PAGE) == {
        "running": 3.0, "waiting": 1.0, "hits": 100.0, "queries": 400.0, "generated": 1234.0,
    }


@pytest.fixture
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = PAGE.encode() if self.path == "/metrics" else b""
            self.send_response(200 if self.path in ("/health", "/metrics") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_serving_server_reports_its_load_and_hit_rate(server):
    state = asyncio.run(llm_server_state(server))
    assert (state.ready, state.running, state.waiting, state.error) == (True, 3, 1, "")
    assert state.prefix_cache_hit_rate == pytest.approx(0.25)
    assert state.generated_tokens == 1234.0


def test_a_server_that_is_not_there_is_not_ready_and_says_why(server):
    dead = server.rsplit(":", 1)[0] + ":1"
    state = asyncio.run(llm_server_state(dead, timeout=1))
    assert not state.ready
    assert "refused" in state.error.lower() or "error" in state.error.lower()


@pytest.mark.parametrize("url", ["127.0.0.1:8003", "https://llm:8003", "http://"])
def test_the_llm_server_setting_must_be_an_http_url(url):
    from services.common.settings import SettingsError
    from services.tts_gateway.settings import TtsSettings

    with pytest.raises(SettingsError, match="TTS_LLM_URL"):
        TtsSettings(llm_url=url).validate()
    TtsSettings(llm_url="http://127.0.0.1:8003").validate()
    TtsSettings(llm_url="").validate()
