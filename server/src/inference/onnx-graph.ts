/**
 * One-node ONNX models encoded here, so that the CUDA probe and the benchmark's matrix-product rate
 * need no file and no Python. Protocol-buffer fields of onnx.proto: ModelProto ir_version 1, graph 7,
 * opset_import 8; GraphProto node 1, name 2, input 11, output 12; NodeProto input 1, output 2,
 * op_type 4; ValueInfoProto name 1, type 2; TypeProto tensor_type 1 (elem_type 1, shape 2 (dim 1
 * (dim_value 1))).
 */
type Bytes = number[];

function varint(n: number): Bytes {
  const out: Bytes = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function field(num: number, wire: 0 | 2, value: number | Bytes | string): Bytes {
  const key = varint((num << 3) | wire);
  if (wire === 0) return [...key, ...varint(value as number)];
  const bytes = typeof value === 'string' ? [...Buffer.from(value, 'utf8')] : (value as Bytes);
  return [...key, ...varint(bytes.length), ...bytes];
}

/** A float32 tensor value of the given fixed shape. */
function valueInfo(name: string, shape: number[]): Bytes {
  const dims = shape.flatMap((d) => field(1, 2, field(1, 0, d)));
  const type = field(1, 2, [...field(1, 0, 1), ...field(2, 2, dims)]);
  return [...field(1, 2, name), ...field(2, 2, type)];
}

/** out = op(inputs...) over float32 tensors, opset 17. */
export function oneNodeModel(
  op: string,
  inputs: { name: string; shape: number[] }[],
  output: { name: string; shape: number[] },
): Uint8Array {
  const node = [...inputs.flatMap((i) => field(1, 2, i.name)), ...field(2, 2, output.name), ...field(4, 2, op)];
  const uniqueInputs = inputs.filter((i, k) => inputs.findIndex((j) => j.name === i.name) === k);
  const graph = [
    ...field(1, 2, node),
    ...field(2, 2, op.toLowerCase()),
    ...uniqueInputs.flatMap((i) => field(11, 2, valueInfo(i.name, i.shape))),
    ...field(12, 2, valueInfo(output.name, output.shape)),
  ];
  const opset = [...field(1, 2, ''), ...field(2, 0, 17)];
  return Uint8Array.from([...field(1, 0, 8), ...field(7, 2, graph), ...field(8, 2, opset)]);
}

/** y = x + x over float32[1]: the CUDA probe. */
export function addModel(): Uint8Array {
  return oneNodeModel(
    'Add',
    [
      { name: 'x', shape: [1] },
      { name: 'x', shape: [1] },
    ],
    { name: 'y', shape: [1] },
  );
}

/** c = a x b over float32[n, n]: the machine's matrix-product rate. */
export function matmulModel(n: number): Uint8Array {
  return oneNodeModel(
    'MatMul',
    [
      { name: 'a', shape: [n, n] },
      { name: 'b', shape: [n, n] },
    ],
    { name: 'c', shape: [n, n] },
  );
}
