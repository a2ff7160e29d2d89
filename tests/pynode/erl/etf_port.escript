#!/usr/bin/env escript
%%! -noinput
%% A port program for pynode's ETF tests: reads {packet, 4} requests on stdin, answers on stdout.
%% Request: <<Op, Payload/binary>>; reply: <<0, Result/binary>> or <<1, ErrorTerm/binary>>.
%%   Op 0: Payload is an external term; reply term_to_binary(binary_to_term(Payload)).
%%   Op 1: Payload is Erlang expression text; reply term_to_binary(Value).
%%   Op 2: as 1, compressed.
%%   Op 3: Payload is <<N:32, Term/binary(N), Expr/binary>>; reply term_to_binary(Term =:= Value).
main(_) ->
    Port = open_port({fd, 0, 1}, [{packet, 4}, binary, eof]),
    loop(Port).

loop(Port) ->
    receive
        {Port, {data, <<Op, Payload/binary>>}} ->
            Reply = try <<0, (handle(Op, Payload))/binary>>
                    catch Class:Reason -> <<1, (term_to_binary({Class, Reason}))/binary>>
                    end,
            port_command(Port, Reply),
            loop(Port);
        {Port, eof} ->
            halt(0)
    end.

handle(0, Bin) -> term_to_binary(binary_to_term(Bin), [{minor_version, 2}]);
handle(1, Text) -> term_to_binary(eval(Text), [{minor_version, 2}]);
handle(2, Text) -> term_to_binary(eval(Text), [{minor_version, 2}, {compressed, 9}]);
handle(3, <<N:32, Bin:N/binary, Text/binary>>) -> term_to_binary(binary_to_term(Bin) =:= eval(Text)).

eval(Text) ->
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Text)),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Exprs, []),
    Value.
