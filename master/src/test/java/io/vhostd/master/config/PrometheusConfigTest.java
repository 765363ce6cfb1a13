package io.vhostd.master.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The {@code prometheus} key: off when absent, strict about its one key and the {@code HOST:PORT} syntax. */
@Timeout(10)
class PrometheusConfigTest {

    @Test
    void shouldBeOffWhenKeyAbsentOrEmpty() throws ConfigException {
        assertFalse(VhostdConfig.parse("").prometheus().enabled());
        assertFalse(VhostdConfig.parse("prometheus:\n").prometheus().enabled());
        assertEquals(PrometheusConfig.DISABLED, VhostdConfig.parse("").prometheus());
    }

    @Test
    void shouldParseListenAndRoundTripWhenGiven() throws ConfigException {
        VhostdConfig v4 = VhostdConfig.parse("prometheus: {listen: \"127.0.0.1:9465\"}\n");
        assertTrue(v4.prometheus().enabled());
        assertEquals(new PrometheusConfig("127.0.0.1", 9465), v4.prometheus());
        assertEquals(v4, VhostdConfig.parse(v4.toYaml()));

        VhostdConfig v6 = VhostdConfig.parse("prometheus: {listen: \"[::1]:0\"}\n");
        assertEquals(new PrometheusConfig("::1", 0), v6.prometheus());
        assertEquals("[::1]:0", v6.prometheus().listenText());
        assertEquals(v6, VhostdConfig.parse(v6.toYaml()));

        assertEquals(
                new PrometheusConfig("metrics.example", 65535),
                VhostdConfig.parse("prometheus:\n  listen: metrics.example:65535\n")
                        .prometheus());
    }

    static Stream<Arguments> badPrometheus() {
        return Stream.of(
                Arguments.of("prometheus: 5\n", "prometheus: must be a mapping, not 5"),
                Arguments.of("prometheus: {}\n", "prometheus.listen: missing"),
                Arguments.of(
                        "prometheus: {listen: \"127.0.0.1:9465\", path: /x}\n",
                        "prometheus.path: unknown key (expected one of: listen)"),
                Arguments.of("prometheus: {listen: 9465}\n", "prometheus.listen: must be a string, not 9465"),
                Arguments.of(
                        "prometheus: {listen: \"127.0.0.1\"}\n",
                        "prometheus.listen: '127.0.0.1' is not HOST:PORT (e.g. \"127.0.0.1:9465\" or \"[::1]:9465\")"),
                Arguments.of(
                        "prometheus: {listen: \"::1:9465\"}\n",
                        "prometheus.listen: '::1:9465' is not HOST:PORT (e.g. \"127.0.0.1:9465\" or \"[::1]:9465\")"),
                Arguments.of(
                        "prometheus: {listen: \"127.0.0.1:65536\"}\n",
                        "prometheus.listen: '127.0.0.1:65536': port 65536 is above 65535"),
                Arguments.of(
                        "prometheus: {listen: \"[localhost]:80\"}\n",
                        "prometheus.listen: '[localhost]:80' is not HOST:PORT (e.g. \"127.0.0.1:9465\" or \"[::1]:9465\")"),
                Arguments.of(
                        "prometheus: {listen: \"[1.2.3.4]:80\"}\n",
                        "prometheus.listen: '[1.2.3.4]:80': brackets are for IPv6 addresses only"));
    }

    @ParameterizedTest
    @MethodSource("badPrometheus")
    void shouldNameTheKeyWhenPrometheusIsBad(String yaml, String expected) {
        ConfigException e = assertThrows(ConfigException.class, () -> VhostdConfig.parse(yaml));
        assertEquals(expected, e.getMessage());
    }
}
