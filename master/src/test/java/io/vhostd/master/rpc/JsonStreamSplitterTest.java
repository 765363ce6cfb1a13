package io.vhostd.master.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import io.vhostd.rpc.RpcErrorCode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class JsonStreamSplitterTest {
    private static final ObjectMapper MAPPER = JsonMapper.builder(JsonFactory.builder()
                    .streamReadConstraints(
                            StreamReadConstraints.builder().maxNestingDepth(8).build())
                    .build())
            .build();

    private static List<JsonStreamSplitter.Frame> feed(JsonStreamSplitter splitter, String... chunks) {
        List<JsonStreamSplitter.Frame> out = new ArrayList<>();
        for (String chunk : chunks) {
            byte[] bytes = chunk.getBytes(StandardCharsets.UTF_8);
            splitter.feed(bytes, 0, bytes.length, out);
        }
        return out;
    }

    private static JsonStreamSplitter.Value value(String json) throws Exception {
        return new JsonStreamSplitter.Value(MAPPER.readTree(json));
    }

    @Test
    void shouldYieldEachValueWhenSplitAtEveryByte() throws Exception {
        String text =
                "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"name\":\"d\\u00e9\"},\"id\":1}\n[1,{\"a\":[]}]";
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        for (int cut = 1; cut < bytes.length; cut++) {
            JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 1 << 20);
            List<JsonStreamSplitter.Frame> out = new ArrayList<>();
            splitter.feed(bytes, 0, cut, out);
            splitter.feed(bytes, cut, bytes.length - cut, out);
            assertEquals(
                    List.of(
                            value("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"name\":\"dé\"},\"id\":1}"),
                            value("[1,{\"a\":[]}]")),
                    out,
                    "cut at " + cut);
        }
    }

    @Test
    void shouldYieldBothValuesWhenTwoArriveInOneChunk() throws Exception {
        JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 1 << 20);
        assertEquals(List.of(value("{\"a\":1}"), value("{\"b\":2}")), feed(splitter, "{\"a\":1}{\"b\":2}"));
        assertEquals(List.of(value("{\"c\":3}")), feed(splitter, " \n\t {\"c\":3}\n"));
    }

    @Test
    void shouldYieldScalarWhenRootValueIsNotStructured() throws Exception {
        JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 1 << 20);
        assertEquals(List.of(value("\"text\""), value("true")), feed(splitter, "\"text\" true "));
    }

    @Test
    void shouldFailWithParseErrorAndStopWhenGarbageArrives() throws Exception {
        JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 1 << 20);
        List<JsonStreamSplitter.Frame> out = feed(splitter, "{\"a\":1} }{garbage");
        assertEquals(2, out.size());
        assertEquals(value("{\"a\":1}"), out.get(0));
        JsonStreamSplitter.Failure failure = assertInstanceOf(JsonStreamSplitter.Failure.class, out.get(1));
        assertEquals(RpcErrorCode.PARSE_ERROR, failure.code());
        assertTrue(splitter.failed());
        assertEquals(List.of(), feed(splitter, "{\"b\":2}"));
    }

    @Test
    void shouldFailWithTooLargeWhenOneChunkHoldsAnOversizedValue() {
        JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 64);
        List<JsonStreamSplitter.Frame> out = feed(splitter, "{\"a\":\"" + "x".repeat(100) + "\"}");
        JsonStreamSplitter.Failure failure = assertInstanceOf(JsonStreamSplitter.Failure.class, out.getLast());
        assertEquals(RpcErrorCode.REQUEST_TOO_LARGE, failure.code());
    }

    @Test
    void shouldFailWithTooLargeBeforeTheValueEndsWhenItKeepsGrowing() {
        JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 64);
        assertEquals(List.of(), feed(splitter, "{\"a\":\"", "x".repeat(50)));
        List<JsonStreamSplitter.Frame> out = feed(splitter, "x".repeat(50));
        assertEquals(1, out.size());
        assertEquals(RpcErrorCode.REQUEST_TOO_LARGE, ((JsonStreamSplitter.Failure) out.get(0)).code());
    }

    @Test
    void shouldCountEachValueSeparatelyWhenManySmallValuesArrive() throws Exception {
        JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 64);
        List<JsonStreamSplitter.Frame> out = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            out.addAll(feed(splitter, "{\"i\":" + i + "}\n"));
        }
        assertEquals(100, out.size());
        assertEquals(value("{\"i\":99}"), out.getLast());
    }

    @Test
    void shouldFailWithParseErrorWhenNestedTooDeep() {
        JsonStreamSplitter splitter = new JsonStreamSplitter(MAPPER, 1 << 20);
        List<JsonStreamSplitter.Frame> out = feed(splitter, "[".repeat(20));
        JsonStreamSplitter.Failure failure = assertInstanceOf(JsonStreamSplitter.Failure.class, out.getLast());
        assertEquals(RpcErrorCode.PARSE_ERROR, failure.code());
    }
}
