import t from 'tap';
import { TurnWriter } from '../../../src/transport/http/turn-writer.js';

t.test('answers of one turn are written together at its end, in order; a failed write does not stop the others', async (t) => {
  const written: string[] = [];
  const failed: string[] = [];
  const writer = new TurnWriter<string, number>((reply, decision) => {
    if (decision < 0) throw new Error(`cannot write ${reply}`);
    written.push(`${reply}=${decision}`);
  }, (reply, error) => failed.push(`${reply}: ${(error as Error).message}`));
  writer.later('a', 1);
  writer.later('b', -1);
  writer.later('c', 3);
  t.same(written, [], 'nothing is written in the turn that decided');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(written, ['a=1', 'c=3'], 'written at the end of the turn, in the order decided');
  t.same(failed, ['b: cannot write b'], 'the failed write is handed to the error path');
  writer.later('d', 4);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(written, ['a=1', 'c=3', 'd=4'], 'a later turn is written in its own flush');
});

t.test('an error path that throws too does not stop the turn\'s other answers', async (t) => {
  const written: string[] = [];
  const writer = new TurnWriter<string, number>((reply) => {
    if (reply === 'bad') throw new Error('cannot write');
    written.push(reply);
  }, () => {
    throw new Error('cannot send the error either');
  });
  for (const reply of ['a', 'bad', 'b']) writer.later(reply, 0);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(written, ['a', 'b']);
});

