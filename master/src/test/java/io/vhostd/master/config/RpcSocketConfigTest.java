package io.vhostd.master.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Keys {@code rpc_socket_mode} and {@code rpc_socket_group}. */
@Timeout(10)
class RpcSocketConfigTest {
    @Test
    void shouldDefaultTo0660AndTheMastersGroupWhenKeysAreAbsent() throws Exception {
        assertEquals(RpcSocketConfig.defaults(), VhostdConfig.parse("").rpcSocketAccess());
        assertEquals("rw-rw----", RpcSocketConfig.defaults().permissionsText());
    }

    @Test
    void shouldReadModeAndGroupByNameOrGidWhenGiven() throws Exception {
        assertEquals(
                new RpcSocketConfig(RpcSocketConfig.MODE_0600, "root"),
                VhostdConfig.parse("rpc_socket_mode: \"0600\"\nrpc_socket_group: root\n")
                        .rpcSocketAccess());
        assertEquals(
                new RpcSocketConfig(RpcSocketConfig.MODE_0660, "4242"),
                VhostdConfig.parse("rpc_socket_group: 4242\n").rpcSocketAccess());
    }

    @Test
    void shouldWriteKeysThatReadBackWhenConfigIsSerialised() throws Exception {
        VhostdConfig config = VhostdConfig.parse("rpc_socket_mode: \"0600\"\nrpc_socket_group: \"0\"\n");

        assertEquals(config, VhostdConfig.parse(config.toYaml()));
    }

    @ParameterizedTest
    @CsvSource(
            delimiter = '|',
            value = {
                "rpc_socket_mode: 0660|rpc_socket_mode|quoted octal string",
                "rpc_socket_mode: \"0666\"|rpc_socket_mode|not allowed",
                "rpc_socket_mode: \"rw-rw----\"|rpc_socket_mode|not allowed",
                "rpc_socket_group: no-such-group-vhostd|rpc_socket_group|no group named 'no-such-group-vhostd'",
                "rpc_socket_group: -1|rpc_socket_group|group name or a gid",
                "rpc_socket_group: [a]|rpc_socket_group|group name or a gid",
                "rpc_socket_group: \"\"|rpc_socket_group|group name or a gid"
            })
    void shouldRefuseNamingTheKeyWhenValueIsBad(String yaml, String key, String says) {
        ConfigException e = assertThrows(ConfigException.class, () -> VhostdConfig.parse(yaml + "\n"));

        assertEquals(key, e.keyPath(), e.getMessage());
        assertTrue(e.getMessage().contains(says), e.getMessage());
    }
}
