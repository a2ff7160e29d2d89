# Elixir calling a Python node: one "label: inspect(value)" line per check (test_elixir_interop.py).
[py] = System.argv() |> Enum.map(&String.to_atom/1)
show = fn label, value -> IO.puts("#{label}: #{inspect(value, limit: :infinity, printable_limit: 200)}") end

show.("ping", Node.ping(py))
show.("call", :erpc.call(py, :operator, :add, [40, 2], 5_000))
show.("multicall", :erpc.multicall([py, node()], :math, :sqrt, [16.0], 5_000))
show.("rpc", :rpc.call(py, :operator, :mul, [6, 7]))
show.("cast", :erpc.cast(py, :operator, :add, [1, 1]))

exception =
  try do
    :erpc.call(py, :math, :sqrt, [-1.0], 5_000)
  rescue
    e in ErlangError -> e.original
  end
{:exception, {:python, class, message, _tb}, _stack} = exception
show.("exception", {class, message})

bad_ir = [%{rv: "mu", dist: "Nromal", params: %{mu: 0.0, sigma: 1.0}}]
{:exception, {:python, vclass, vmessage, _}, _} =
  try do
    :erpc.call(py, Exmc.NUTS.Sampler, :sample_chains, [bad_ir, 1], 10_000)
  rescue
    e in ErlangError -> e.original
  end
show.("validation", {vclass, vmessage})

timeout =
  try do
    :erpc.call(py, :time, :sleep, [5], 200)
  rescue
    e in ErlangError -> e.original
  end
show.("timeout", timeout)

# (the receive sits in a fun: OTP 25's compiler trips over a monitor ref received at top level)
wait_down = fn {pid, ref} ->
  receive do
    {:DOWN, ^ref, :process, ^pid, reason} -> {node(pid), reason}
  after
    10_000 -> :none
  end
end
show.("spawn_down", wait_down.(Node.spawn_monitor(py, :operator, :add, [1, 2])))

ir = [%{rv: "mu", dist: "Normal", params: %{mu: 0.0, sigma: 1.0}}]
[chain] = :erpc.call(py, Exmc.NUTS.Sampler, :sample_chains,
                     [ir, 1, [num_samples: 20, num_warmup: 20, arrays: :binary]], 60_000)
%{"dtype" => "f64", "shape" => [20], "data" => data} = chain["mu"]
show.("binary_draws", {byte_size(data), Enum.all?(for <<x::float-little-64 <- data>>, do: is_float(x))})

Node.monitor(py, true)
show.("monitoring", Node.list())
