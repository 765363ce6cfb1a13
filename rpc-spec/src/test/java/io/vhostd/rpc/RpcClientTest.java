package io.vhostd.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.net.ConnectException;
import java.net.SocketTimeoutException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(20)
class RpcClientTest {
    @TempDir
    Path dir;

    private static String result(JsonNode request, String resultJson) {
        return "{\"jsonrpc\":\"2.0\",\"result\":" + resultJson + ",\"id\":" + request.get("id") + "}";
    }

    @Test
    void shouldReturnResultWhenServerAnswers() throws Exception {
        try (ScriptedServer server = new ScriptedServer(
                        dir.resolve("rpc.sock"),
                        (req, conn) -> conn.write(result(req, "[{\"name\":\"disk0\"}]") + "\n"));
                RpcClient client = RpcClient.connect(server.path())) {
            JsonNode result = client.call("bdev_get_bdevs", Json.MAPPER.readTree("{\"name\":\"disk0\"}"));
            assertEquals(Json.MAPPER.readTree("[{\"name\":\"disk0\"}]"), result);
            JsonNode sent = server.requests().poll(5, TimeUnit.SECONDS);
            assertEquals(
                    Json.MAPPER.readTree(
                            "{\"jsonrpc\":\"2.0\",\"method\":\"bdev_get_bdevs\",\"params\":{\"name\":\"disk0\"},\"id\":1}"),
                    sent);
        }
    }

    @Test
    void shouldReadResponsesWhenSplitAcrossWritesWithoutNewlines() throws Exception {
        ScriptedServer.Script split = (req, conn) -> {
            String response = result(req, "{\"n\":" + req.get("id") + "}");
            conn.write(response.substring(0, 7));
            conn.write(response.substring(7));
        };
        try (ScriptedServer server = new ScriptedServer(dir.resolve("rpc.sock"), split);
                RpcClient client = RpcClient.connect(server.path())) {
            for (int i = 1; i <= 3; i++) {
                assertEquals(i, client.call("rpc_get_methods", null).get("n").asInt());
            }
        }
    }

    @Test
    void shouldThrowRpcExceptionWhenServerAnswersWithError() throws Exception {
        ScriptedServer.Script error = (req, conn) -> conn.write("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32001,"
                + "\"message\":\"no bdev named 'disk9'\",\"data\":{\"name\":\"no_such_bdev\"}},\"id\":"
                + req.get("id") + "}\n");
        try (ScriptedServer server = new ScriptedServer(dir.resolve("rpc.sock"), error);
                RpcClient client = RpcClient.connect(server.path())) {
            RpcException e = assertThrows(RpcException.class, () -> client.call("bdev_get_bdevs", null));
            assertEquals(-32001, e.error().code());
            assertEquals("no_such_bdev", e.error().name());
            assertEquals("no bdev named 'disk9'", e.error().message());
            // an error response leaves the connection usable
            assertThrows(RpcException.class, () -> client.call("bdev_get_bdevs", null));
        }
    }

    @Test
    void shouldAcceptNullIdWhenServerCouldNotReadTheRequest() throws Exception {
        ScriptedServer.Script parseError = (req, conn) -> conn.write("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,"
                + "\"message\":\"Parse error\",\"data\":{\"name\":\"parse_error\"}},\"id\":null}\n");
        try (ScriptedServer server = new ScriptedServer(dir.resolve("rpc.sock"), parseError);
                RpcClient client = RpcClient.connect(server.path())) {
            RpcException e = assertThrows(RpcException.class, () -> client.call("x", null));
            assertEquals("parse_error", e.error().name());
        }
    }

    @Test
    void shouldThrowProtocolErrorAndCloseWhenServerSendsGarbage() throws Exception {
        try (ScriptedServer server =
                        new ScriptedServer(dir.resolve("rpc.sock"), (req, conn) -> conn.write("}{ garbage\n"));
                RpcClient client = RpcClient.connect(server.path())) {
            RpcProtocolException e = assertThrows(RpcProtocolException.class, () -> client.call("x", null));
            assertTrue(e.getMessage().contains("malformed response"), e.getMessage());
            IOException after = assertThrows(IOException.class, () -> client.call("x", null));
            assertTrue(after.getMessage().contains("closed"), after.getMessage());
        }
    }

    @Test
    void shouldThrowProtocolErrorWhenResponseIsNotAResponse() throws Exception {
        try (ScriptedServer server = new ScriptedServer(dir.resolve("rpc.sock"), (req, conn) -> conn.write("[1,2]\n"));
                RpcClient client = RpcClient.connect(server.path())) {
            assertThrows(RpcProtocolException.class, () -> client.call("x", null));
        }
    }

    @Test
    void shouldThrowProtocolErrorWhenResponseAnswersAnotherId() throws Exception {
        try (ScriptedServer server = new ScriptedServer(
                        dir.resolve("rpc.sock"),
                        (req, conn) -> conn.write("{\"jsonrpc\":\"2.0\",\"result\":1,\"id\":99}"));
                RpcClient client = RpcClient.connect(server.path())) {
            RpcProtocolException e = assertThrows(RpcProtocolException.class, () -> client.call("x", null));
            assertTrue(e.getMessage().contains("does not match"), e.getMessage());
        }
    }

    @Test
    void shouldThrowProtocolErrorWhenServerClosesBeforeAnswering() throws Exception {
        try (ScriptedServer server = new ScriptedServer(dir.resolve("rpc.sock"), (req, conn) -> conn.close());
                RpcClient client = RpcClient.connect(server.path())) {
            RpcProtocolException e = assertThrows(RpcProtocolException.class, () -> client.call("x", null));
            assertTrue(e.getMessage().contains("connection closed"), e.getMessage());
        }
    }

    @Test
    void shouldTimeOutWhenServerNeverAnswers() throws Exception {
        try (ScriptedServer server = new ScriptedServer(dir.resolve("rpc.sock"), (req, conn) -> {});
                RpcClient client = RpcClient.connect(server.path(), Duration.ofMillis(200))) {
            assertThrows(SocketTimeoutException.class, () -> client.call("x", null));
        }
    }

    @Test
    void shouldNameThePathWhenNothingListens() {
        Path missing = dir.resolve("missing.sock");
        ConnectException e = assertThrows(ConnectException.class, () -> RpcClient.connect(missing));
        assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());
    }
}
