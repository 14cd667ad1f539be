-- Test-only Prosody module for wavebox's interop tests (tests/prosody.py
-- loads it; it is never part of a deployment).
--
-- 1. Routes.  Test domains live under .test, which no resolver answers
--    (RFC 6761), and the server under test listens on an ephemeral port.
--    With
--        wavebox_routes = { ["wave.test"] = { "127.0.0.2", 40123 } }
--    every outgoing S2S connection to wave.test goes straight to that
--    address, without any DNS query.  mod_s2s asks net.resolvers.service for
--    a resolver each time it opens a connection (once for xmpps-server, the
--    XEP-0368 direct TLS service, once for xmpp-server), so wrapping that
--    constructor is enough on Prosody 0.12.
--
-- 2. Queries from Prosody's side.  The admin shell can ping a remote server
--    but has no disco command, and its xmpp:ping refuses a target that is
--    one of Prosody's own hosts, which an external component is.  So this
--    module adds two commands that tests run with
--        prosodyctl --config FILE shell ">wavebox_test.disco('prosody.test', 'wave.test', 'info')"
--        prosodyctl --config FILE shell ">wavebox_test.ping('prosody.test', 'wave.prosody.test')"
--    disco sends an XEP-0030 query from a local host and prints the answer
--    one fact a line ("identity collaboration/google-wave Google Wave",
--    "feature urn:xmpp:ping", "item wave.x.test"); ping sends an XEP-0199
--    ping and prints "pong from JID".

module:set_global();

local st = require "util.stanza";
local new_id = require "util.id".short;
local manual_resolver = require "net.resolvers.manual";
local service_resolver = require "net.resolvers.service";

local routes = module:get_option("wavebox_routes", {});

-- Keep the real constructor across reloads of this module.
local real_new = service_resolver.wavebox_real_new or service_resolver.new;
service_resolver.wavebox_real_new = real_new;

service_resolver.new = function (name, service, conn_type, extra)
	local route = routes[name];
	if not route then
		return real_new(name, service, conn_type, extra);
	end
	if service ~= "xmpp-server" then
		-- The server under test has no direct-TLS port: no targets at all.
		return manual_resolver.new({}, conn_type, extra);
	end
	local address, port = route[1], tonumber(route[2]);
	module:log("debug", "wavebox_routes: %s is at %s port %d", name, address, port);
	local target = { (conn_type or "tcp") .. "4", address, port, extra };
	return manual_resolver.new({ target }, conn_type, extra);
end

function module.unload()
	service_resolver.new = real_new;
	rawset(_G, "wavebox_test", nil);
end

-- 3. A start-up marker.  "server-started" fires once every host (and so
--    every port, including the component port) has been set up; the
--    fixture waits for this line before it trusts that the ports it sees
--    open are Prosody's.
module:hook("server-started", function ()
	module:log("info", "wavebox_test: all hosts and ports are set up");
end);

local DISCO = "http://jabber.org/protocol/disco#";

local function describe(query, what)
	local lines = {};
	if what == "info" then
		for identity in query:childtags("identity") do
			table.insert(lines, ("identity %s/%s %s"):format(identity.attr.category or "",
				identity.attr.type or "", identity.attr.name or ""));
		end
		for feature in query:childtags("feature") do
			table.insert(lines, "feature " .. (feature.attr.var or ""));
		end
	else
		for item in query:childtags("item") do
			table.insert(lines, "item " .. (item.attr.jid or ""));
		end
	end
	if #lines == 0 then return "(empty)"; end
	return table.concat(lines, "\n");
end

-- Prosody forbids plain global assignment in modules; the admin shell's ">"
-- mode evaluates in the global environment, so this one is deliberate.
rawset(_G, "wavebox_test", {
	disco = function (from_host, to, what, timeout)
		what = what or "info";
		local iq = st.iq({ type = "get", from = from_host, to = to, id = new_id() })
			:query(DISCO .. what);
		return module:context(from_host):send_iq(iq, nil, timeout or 20):next(function (response)
			local query = response.stanza:get_child("query", DISCO .. what);
			if not query then return "(no query element)"; end
			return describe(query, what);
		end);
	end;
	ping = function (from_host, to, timeout)
		local iq = st.iq({ type = "get", from = from_host, to = to, id = new_id() })
			:tag("ping", { xmlns = "urn:xmpp:ping" });
		return module:context(from_host):send_iq(iq, nil, timeout or 20):next(function (response)
			return "pong from " .. tostring(response.stanza.attr.from);
		end);
	end;
});
