%% A peer for the tests: reads one Erlang expression sequence per line on
%% standard input (ending with "."), evaluates it with the bindings of the
%% lines before, and answers one line: "bin <hex>" for a binary, "term <~w>"
%% for anything else, "error <~w>" when it raised. The helpers below do what
%% Charon 4.3's Redis store does in Elixir, with Erlang/OTP's own crypto and
%% term_to_binary, so that the tests compare the Rust store with the real
%% runtime rather than with a model of it.
-module(charon_peer).
-export([main/0, key/1, sign/2, verify/2, session/1, encode/1, encode_default/1,
         charon_get/6, refresh/3, for_upsert/1, library_version/0, datetime/0,
         rich_payload/0, hex/1]).

main() ->
    loop(erl_eval:new_bindings()).

loop(Bindings) ->
    case io:get_line("") of
        eof -> halt(0);
        {error, _} -> halt(1);
        Line ->
            {Reply, Next} = eval(Line, Bindings),
            io:put_chars([Reply, $\n]),
            loop(Next)
    end.

eval(Line, Bindings) ->
    try
        {ok, Tokens, _} = erl_scan:string(Line),
        {ok, Exprs} = erl_parse:parse_exprs(Tokens),
        {value, Value, Next} = erl_eval:exprs(Exprs, Bindings),
        {reply(Value), Next}
    catch
        Class:Reason:Stack ->
            {["error ", io_lib:format("~w", [{Class, Reason, lists:sublist(Stack, 2)}])], Bindings}
    end.

reply(Value) when is_binary(Value) -> ["bin ", binary:encode_hex(Value)];
reply(Value) -> ["term ", io_lib:format("~w", [Value])].

hex(Text) -> binary:decode_hex(Text).

%% The signing key Charon's RedisStore derives from the base secret
%% (Charon.Utils.KeyGenerator: PBKDF2-HMAC-SHA256, 250 000 iterations, 32 bytes).
key(BaseSecret) ->
    crypto:pbkdf2_hmac(sha256, BaseSecret, <<"RedisStore HMAC">>, 250000, 32).

%% Charon.Internal.Crypto.sign_hmac/2: "signed." ++ HMAC-SHA256 ++ "." ++ data.
sign(Data, Key) ->
    Mac = crypto:mac(hmac, sha256, Key, Data),
    <<"signed.", Mac/binary, ".", Data/binary>>.

%% Charon.Internal.Crypto.verify_hmac/2 for the raw-MAC form.
verify(<<"signed.", Mac:32/binary, ".", Data/binary>>, Key) ->
    case crypto:hash_equals(Mac, crypto:mac(hmac, sha256, Key, Data)) of
        true -> {ok, Data};
        false -> {error, invalid_signature}
    end;
verify(_, _) ->
    {error, malformed_input}.

%% %Charon.Models.Session{} with the struct's defaults for the fields not given.
session(Fields) ->
    Defaults = #{'__struct__' => 'Elixir.Charon.Models.Session',
                 extra_payload => #{}, lock_version => 0, prev_tokens_fresh_from => 0,
                 type => full, version => 7},
    Session = maps:merge(Defaults, Fields),
    Keys = [created_at, expires_at, extra_payload, id, lock_version, prev_tokens_fresh_from,
            refresh_expires_at, refresh_token_id, refreshed_at, tokens_fresh_from, type,
            user_id, version, '__struct__'],
    14 = map_size(Session),
    [true = maps:is_key(K, Session) || K <- Keys],
    Session.

%% What the Rust store writes, byte for byte, on this runtime (OTP 25): atoms
%% as SMALL_ATOM_UTF8_EXT, the keys of small maps in term order. Charon calls
%% term_to_binary/1 instead: on OTP 25 that writes atoms as ATOM_EXT
%% (encode_default/1), and OTP 26 and later write the atom keys of small maps
%% in atom-table order; what any release writes is =:= equal to this.
encode(Session) -> term_to_binary(Session, [{minor_version, 2}]).

%% What Charon 4.3 stores on this runtime (OTP 25: atoms as ATOM_EXT).
encode_default(Session) -> term_to_binary(Session).

%% Charon's RedisStore get/4 after its HGET: verify, binary_to_term (which
%% raises on what it cannot read, uncaught, as in Charon), and the checks of
%% verify_payload: id, user id and type equal, refresh_expires_at >= now.
charon_get(undefined, _Sid, _Uid, _Type, _Key, _Now) ->
    nil;
charon_get(Value, Sid, Uid, Type, Key, Now) ->
    case verify(Value, Key) of
        {ok, Data} ->
            case binary_to_term(Data) of
                S = #{id := Sid, user_id := Uid, type := Type, refresh_expires_at := Exp}
                  when Exp >= Now -> S;
                _ -> nil
            end;
        _ -> nil
    end.

%% A refresh as an Elixir service does one: a new refresh token id, the
%% freshness window moved on, the refresh window extended (capped at
%% expires_at).
refresh(S = #{tokens_fresh_from := Fresh, expires_at := Exp}, Now, Ttl) ->
    Until = case Exp of infinite -> Now + Ttl; _ -> min(Now + Ttl, Exp) end,
    S#{refresh_token_id := base64:encode(crypto:strong_rand_bytes(16)),
       prev_tokens_fresh_from := Fresh, tokens_fresh_from := Now,
       refreshed_at := Now, refresh_expires_at := Until}.

%% The session as Charon's upsert serializes it: with the next lock version.
for_upsert(S = #{lock_version := Lock}) -> S#{lock_version := Lock + 1}.

%% The hash in Charon's function library name, of Charon's version.
library_version() -> erlang:phash2(<<"4.3.0">>, 1 bsl 32).

%% %DateTime{} of 2026-12-07 06:00:00.123456Z, as Elixir builds it.
datetime() ->
    #{'__struct__' => 'Elixir.DateTime', calendar => 'Elixir.Calendar.ISO',
      year => 2026, month => 12, day => 7, hour => 6, minute => 0, second => 0,
      microsecond => {123456, 6}, time_zone => <<"Etc/UTC">>, zone_abbr => <<"UTC">>,
      utc_offset => 0, std_offset => 0}.

%% An extra_payload with every kind of term an application stores.
rich_payload() ->
    #{role => admin, <<"ip">> => <<"2001:db8::1">>, count => 42, big => 1 bsl 80,
      negative => -(1 bsl 40), ratio => 0.1, pi => math:pi(), nothing => nil, yes => true,
      scopes => [read, write], charlist => "abc", point => {1, 2.5, <<"z">>},
      nested => #{<<"deep">> => #{level => 3, list => [1, [2, [3]]]}},
      signed_in_at => datetime(), raw => <<255, 0, 1>>, empty => #{}, nil_list => [],
      1 => <<"integer key">>, 'caf\x{e9}' => <<"latin-1 atom">>,
      unicode => unicode:characters_to_binary([16#7528, 16#6237])}.
