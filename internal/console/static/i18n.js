// Chinese first, English on request; the choice is kept in localStorage
// (it is not a secret). Static text carries data-i18n="key" (its text) or
// data-i18n-title; scripts call t(key, values).

const dict = {
  zh: {
    'console': '控制台', 'signout': '退出', 'find': '查找', 'cancel': '取消', 'key': '幂等键',
    'signin.title': '登录', 'signin.token': '管理令牌 (GIFTD_ADMIN_TOKEN)', 'signin.submit': '登录',
    'signin.hint': '令牌只保存在本标签页的 sessionStorage 中，关闭标签页即清除；它只随请求的 Authorization 头发送，从不出现在网址中。',
    'signin.wrong': '令牌被拒绝：{msg}', 'signin.expired': '令牌已失效，请重新登录。',
    'nav.now': '实时', 'nav.wallet': '钱包', 'nav.debit': '扣款', 'nav.audit': '对账',
    'nav.receivers': '主播收益', 'nav.gifts': '礼物', 'nav.leaderboards': '排行榜', 'nav.soon': '即将推出',
    'now.rate': '回调/秒', 'now.debited': '扣款成功/秒', 'now.errors': '系统错误 (5 分钟)',
    'now.chart': '回调/秒（最近 5 分钟）', 'now.outcomes': '回调结果', 'now.window': '最近 5 分钟', 'now.total': '启动以来',
    'now.forms': 'LinkV 签名形式', 'now.pool': '数据库连接池', 'now.gold': '金币',
    'now.ready': '就绪', 'now.notready': '未就绪：{err}',
    'now.since': '每 2 秒刷新；比率按最近 {s} 秒计算（本页打开后开始采样）。进程级数据：多副本时只显示本副本。',
    'now.waiting': '每 2 秒刷新；比率需要两次采样。',
    'pool.acquired_connections': '使用中', 'pool.idle_connections': '空闲', 'pool.total_connections': '已打开', 'pool.max_connections': '上限',
    'pool.empty_acquires_total': '需等待的获取', 'pool.acquire_wait_seconds_total': '等待总时长 (秒)', 'pool.canceled_acquires_total': '取消的获取',
    'gold.debited': '扣除 ({p})', 'gold.topup': '充值', 'gold.reversal': '冲正', 'gold.prune_errors': '清理失败次数',
    'wallet.user': '用户 ID', 'wallet.balance': '余额', 'wallet.updated': '更新于', 'wallet.missing': '此用户还没有钱包；首次充值会创建它。',
    'wallet.topup': '充值', 'wallet.topup.submit': '充值', 'wallet.newkey': '新的充值', 'wallet.ledger': '流水',
    'wallet.keyhint': '同一个键只会充值一次：重复点击或重试都只记一笔。要再充一笔，请点“新的充值”。',
    'wallet.done': '已充值 {amount}，记录 #{entry}，余额 {gold}。', 'wallet.empty': '没有流水。',
    'safe.title': '消费保护', 'safe.hint': '只读：用管理 API 设置（docs/safeguards.md）。',
    'safe.enforced': '执行中', 'safe.off': '未开启（GIFTD_SAFEGUARDS=off）', 'safe.none': '无个人策略：使用应用与默认设置',
    'safe.flags': '标记', 'safe.minor': '未成年', 'safe.blocked': '已封禁', 'safe.consent': '同意公开',
    'safe.suspended': '收益暂停至', 'safe.caps': '上限（单笔 / 24 小时 / 月）', 'safe.inherit': '继承',
    'safe.spent': '已消费（24 小时 / 今日 / 本月）', 'safe.cool': '冷静期至',
    'wallet.reused': '这个幂等键已用于另一笔金额或用户；请点“新的充值”。',
    'page.newest': '最新', 'page.older': '更早 →',
    'col.platform': '平台', 'col.outcome': '结果', 'col.form': '形式', 'col.amount': '金额', 'col.note': '备注', 'col.time': '时间',
    'col.kind': '类型', 'col.after': '余额', 'col.ref': '来源 / 键', 'col.details': '详情',
    'kind.debit': '扣款', 'kind.topup': '充值', 'kind.reversal': '冲正',
    'debit.app': '应用 ID (app_id)', 'debit.id': 'request_id', 'debit.ref': 'ref（账本键）',
    'debit.asked': '请求内容', 'debit.answered': '应答', 'debit.entries': '账本记录',
    'debit.user': '用户', 'debit.gold': '金币', 'debit.status': '状态', 'debit.balance': '应答余额', 'debit.at': '执行于', 'debit.expires': '过期于',
    'debit.status.200': '200 已扣款', 'debit.status.402': '402 余额不足',
    'debit.pruned': '请求记录已在过期后清理；账本记录仍在。',
    'debit.noentry': '这笔请求没有扣到金币（余额不足），无需冲正。',
    'debit.reverse': '冲正…', 'debit.reason': '原因（必填）', 'debit.confirm': '确认冲正',
    'debit.what': '把 {gold} 金币退回用户 {user}。',
    'debit.reversed': '已于 {at} 冲正（记录 #{entry}，键 {key}）：{note}',
    'audit.hint': '只读：在同一个快照里核对每个钱包的余额是否等于其流水之和、是否有负余额。',
    'audit.run': '运行对账', 'audit.findings': '问题钱包', 'audit.sum': '流水之和',
    'audit.ok': '账平：所有余额等于流水之和，没有负余额。', 'audit.bad': '账不平：{m} 个钱包不符，{n} 个负余额。',
    'audit.wallets': '钱包', 'audit.entries': '流水条数', 'audit.total': '金币总额', 'audit.mismatched': '不符', 'audit.negative': '负余额', 'audit.at': '快照时间',
    'board.room': '房间 ID', 'board.window': '时间窗', 'board.senders': '送礼榜', 'board.receivers': '收礼榜',
    'board.span': '{from} 至 {to}；已冲正的礼物不计入。', 'board.empty': '这段时间没有礼物。',
    'board.w1h': '最近 1 小时', 'board.w24h': '最近 24 小时', 'board.w7d': '最近 7 天',
    'col.rank': '名次', 'col.sender': '送礼人', 'col.receiver': '主播', 'col.gifts': '礼物数', 'col.gold': '金币', 'col.earnings': '收益',
    'gifts.all': '全部', 'gifts.new': '新建礼物…', 'gifts.id': '礼物 ID', 'gifts.name': '名称', 'gifts.price': '单价（金币）',
    'gifts.share': '主播分成（基点）', 'gifts.sharecol': '分成', 'gifts.status': '状态', 'gifts.version': '版本', 'gifts.changed': '修改于',
    'gifts.next': '下一步…', 'gifts.catalogue': '礼物目录', 'gifts.empty': '目录里还没有礼物。',
    'gifts.hint': '单价按每件计（Polyv：goodPrice × GIFTD_POLYV_POINT_SCALE）；分成以基点计，10000 = 100%，留空则用默认分成。每次修改都是一个新版本，已结算的礼物不受影响。',
    'gifts.active': '启用', 'gifts.inactive': '已停用', 'gifts.edit': '修改', 'gifts.history': '历史', 'gifts.deactivate': '停用', 'gifts.activate': '启用',
    'gifts.title.new': '新建礼物', 'gifts.title.edit': '修改 {platform} · {id}', 'gifts.title.deactivate': '停用 {platform} · {id}', 'gifts.title.activate': '启用 {platform} · {id}',
    'gifts.what.new': '新建 {platform} 礼物 {id}“{name}”：单价 {price}，主播分成 {share}。',
    'gifts.what.edit': '修改 {platform} 礼物 {id}：{changes}。',
    'gifts.what.same': '没有改动。',
    'gifts.what.deactivate': '停用 {platform} 礼物 {id}“{name}”：价格校验开启时，它将被拒绝。',
    'gifts.what.activate': '重新启用 {platform} 礼物 {id}“{name}”。',
    'gifts.done': '{platform} 礼物 {id} 现为第 {version} 版。', 'gifts.history.title': '{platform} · {id} 的版本',
    'gifts.share.default': '默认分成', 'confirm': '确认',
    'recv.id': '主播 ID', 'recv.balance': '收益余额', 'recv.payable': '可结算', 'recv.held': '暂扣', 'recv.owed': '欠款',
    'recv.missing': '此主播还没有收益账户：还没有收到过分成。',
    'recv.payout': '结算', 'recv.payout.open': '结算…', 'recv.payout.confirm': '确认结算', 'recv.newkey': '新的结算',
    'recv.keyhint': '同一个键只会结算一次：重复点击或重试都只记一笔。要再结算一笔，请点“新的结算”。',
    'recv.what': '从 {receiver} 的收益中结算 {amount}（当前可结算 {payable}）。实际付款由财务完成，giftd 只记录。',
    'recv.over': '金额必须在 1 到可结算的 {payable} 之间。',
    'recv.done': '已结算 {amount}（先抵扣欠款 {recovered}），记录 #{entry}，收益余额 {balance}。',
    'recv.reused': '这个幂等键已用于另一笔金额或主播；请点“新的结算”。',
    'recv.report': '期间报表', 'recv.from': '从（含）', 'recv.to': '到（不含）', 'recv.ledger': '收益流水', 'recv.top': '最近 24 小时收礼的主播',
    'recv.none': '（无主播）', 'recv.notop': '最近 24 小时没有礼物。',
    'rep.gifts': '礼物数', 'rep.gold': '金币', 'rep.earned': '分成收入', 'rep.taken_back': '冲正收回', 'rep.shortfall': '冲正欠款',
    'rep.net': '净收入', 'rep.recovered': '抵扣欠款', 'rep.paid_out': '已结算', 'rep.period': '期间',
    'ekind.gift': '礼物分成', 'ekind.reversal': '冲正', 'ekind.shortfall': '欠款', 'ekind.payout': '结算', 'ekind.recovery': '抵扣欠款',
    'chan.title': 'Polyv 频道 → 主播', 'chan.channel': '频道 (channelId)', 'chan.map': '映射…', 'chan.unmap': '取消映射',
    'chan.hint': 'Polyv 的打赏按频道记给这里映射的主播；未映射的频道全部归平台。修改只影响以后的礼物。',
    'chan.what.set': '把 Polyv 频道 {channel} 的打赏记给主播 {receiver}（以后的礼物）。',
    'chan.what.remove': '取消 Polyv 频道 {channel} 的映射：以后的打赏全部归平台。',
    'chan.empty': '没有映射的频道。', 'chan.done': '已保存。',
    'soon': '这一页将在礼物经济的管理接口上线后提供。',
    'err.network': '无法连接 giftd：{msg}', 'loading': '加载中…',
  },
  en: {
    'console': 'console', 'signout': 'Sign out', 'find': 'Find', 'cancel': 'Cancel', 'key': 'Idempotency key',
    'signin.title': 'Sign in', 'signin.token': 'Admin token (GIFTD_ADMIN_TOKEN)', 'signin.submit': 'Sign in',
    'signin.hint': 'The token is kept in this tab\'s sessionStorage only and is gone when the tab closes; it is sent only in the Authorization header, never in a URL.',
    'signin.wrong': 'Token refused: {msg}', 'signin.expired': 'The token is no longer accepted; sign in again.',
    'nav.now': 'Now', 'nav.wallet': 'Wallet', 'nav.debit': 'Debit', 'nav.audit': 'Audit',
    'nav.receivers': 'Receivers', 'nav.gifts': 'Gifts', 'nav.leaderboards': 'Leaderboards', 'nav.soon': 'soon',
    'now.rate': 'callbacks/s', 'now.debited': 'debited/s', 'now.errors': 'system errors (5 min)',
    'now.chart': 'Callbacks/s (last 5 minutes)', 'now.outcomes': 'Callback outcomes', 'now.window': 'last 5 min', 'now.total': 'since start',
    'now.forms': 'LinkV signature forms', 'now.pool': 'Database pool', 'now.gold': 'Gold',
    'now.ready': 'ready', 'now.notready': 'not ready: {err}',
    'now.since': 'Refreshes every 2 s; rates over the last {s} s (sampled since this page opened). Per process: with replicas, this one only.',
    'now.waiting': 'Refreshes every 2 s; rates need two samples.',
    'pool.acquired_connections': 'in use', 'pool.idle_connections': 'idle', 'pool.total_connections': 'open', 'pool.max_connections': 'max',
    'pool.empty_acquires_total': 'acquires that waited', 'pool.acquire_wait_seconds_total': 'total wait (s)', 'pool.canceled_acquires_total': 'cancelled acquires',
    'gold.debited': 'debited ({p})', 'gold.topup': 'topped up', 'gold.reversal': 'reversed', 'gold.prune_errors': 'pruning failures',
    'wallet.user': 'User id', 'wallet.balance': 'Balance', 'wallet.updated': 'Updated', 'wallet.missing': 'This user has no wallet yet; the first top-up creates it.',
    'wallet.topup': 'Top up', 'wallet.topup.submit': 'Top up', 'wallet.newkey': 'New top-up', 'wallet.ledger': 'Ledger',
    'wallet.keyhint': 'One key tops up once: a double click or a retry makes one entry. For another top-up, click "New top-up".',
    'wallet.done': 'Topped up {amount}, entry #{entry}, balance {gold}.', 'wallet.empty': 'No entries.',
    'safe.title': 'Safeguards', 'safe.hint': 'Read-only: set them through the admin API (docs/safeguards.md).',
    'safe.enforced': 'Enforced', 'safe.off': 'Off (GIFTD_SAFEGUARDS=off)', 'safe.none': 'No policy of their own: the app\'s and the defaults apply',
    'safe.flags': 'Flags', 'safe.minor': 'minor', 'safe.blocked': 'blocked', 'safe.consent': 'consents to display',
    'safe.suspended': 'Earnings suspended until', 'safe.caps': 'Caps (per gift / 24 h / month)', 'safe.inherit': 'inherited',
    'safe.spent': 'Spent (24 h / today / month)', 'safe.cool': 'Cooling-off until',
    'wallet.reused': 'This idempotency key was used for another amount or user; click "New top-up".',
    'page.newest': 'Newest', 'page.older': 'Older →',
    'col.platform': 'Platform', 'col.outcome': 'Outcome', 'col.form': 'Form', 'col.amount': 'Amount', 'col.note': 'Note', 'col.time': 'Time',
    'col.kind': 'Kind', 'col.after': 'Balance', 'col.ref': 'Source / key', 'col.details': 'Details',
    'kind.debit': 'debit', 'kind.topup': 'top-up', 'kind.reversal': 'reversal',
    'debit.app': 'App id (app_id)', 'debit.id': 'request_id', 'debit.ref': 'ref (ledger key)',
    'debit.asked': 'Asked', 'debit.answered': 'Answered', 'debit.entries': 'Ledger entries',
    'debit.user': 'User', 'debit.gold': 'Gold', 'debit.status': 'Status', 'debit.balance': 'Balance answered', 'debit.at': 'Executed', 'debit.expires': 'Expires',
    'debit.status.200': '200 debited', 'debit.status.402': '402 insufficient gold',
    'debit.pruned': 'The request record was pruned after its expiry; the ledger entry remains.',
    'debit.noentry': 'This request took no gold (insufficient): nothing to reverse.',
    'debit.reverse': 'Reverse…', 'debit.reason': 'Reason (required)', 'debit.confirm': 'Confirm reversal',
    'debit.what': 'Give {gold} gold back to user {user}.',
    'debit.reversed': 'Reversed at {at} (entry #{entry}, key {key}): {note}',
    'audit.hint': 'Read-only: in one snapshot, checks that every balance equals the sum of its ledger entries and that none is negative.',
    'audit.run': 'Run the audit', 'audit.findings': 'Wallets that fail', 'audit.sum': 'Ledger sum',
    'audit.ok': 'The books balance: every balance equals its ledger, none is negative.', 'audit.bad': 'The books do not balance: {m} mismatched, {n} negative.',
    'audit.wallets': 'Wallets', 'audit.entries': 'Entries', 'audit.total': 'Total gold', 'audit.mismatched': 'Mismatched', 'audit.negative': 'Negative', 'audit.at': 'Snapshot',
    'board.room': 'Room id', 'board.window': 'Window', 'board.senders': 'Top senders', 'board.receivers': 'Top receivers',
    'board.span': '{from} to {to}; reversed gifts are left out.', 'board.empty': 'No gifts in this window.',
    'board.w1h': 'last hour', 'board.w24h': 'last 24 hours', 'board.w7d': 'last 7 days',
    'col.rank': 'Rank', 'col.sender': 'Sender', 'col.receiver': 'Receiver', 'col.gifts': 'Gifts', 'col.gold': 'Gold', 'col.earnings': 'Earnings',
    'gifts.all': 'all', 'gifts.new': 'New gift…', 'gifts.id': 'Gift id', 'gifts.name': 'Name', 'gifts.price': 'Price (coins)',
    'gifts.share': 'Receiver\'s share (bp)', 'gifts.sharecol': 'Share', 'gifts.status': 'Status', 'gifts.version': 'Version', 'gifts.changed': 'Changed',
    'gifts.next': 'Next…', 'gifts.catalogue': 'Catalogue', 'gifts.empty': 'No gifts in the catalogue yet.',
    'gifts.hint': 'The price is per item (Polyv: goodPrice × GIFTD_POLYV_POINT_SCALE); the share is in basis points, 10000 = 100%, empty for the default share. Every change is a new version; gifts already settled are not touched.',
    'gifts.active': 'active', 'gifts.inactive': 'inactive', 'gifts.edit': 'Edit', 'gifts.history': 'History', 'gifts.deactivate': 'Deactivate', 'gifts.activate': 'Activate',
    'gifts.title.new': 'New gift', 'gifts.title.edit': 'Edit {platform} · {id}', 'gifts.title.deactivate': 'Deactivate {platform} · {id}', 'gifts.title.activate': 'Activate {platform} · {id}',
    'gifts.what.new': 'Add {platform} gift {id} "{name}": price {price}, receiver\'s share {share}.',
    'gifts.what.edit': 'Change {platform} gift {id}: {changes}.',
    'gifts.what.same': 'Nothing changed.',
    'gifts.what.deactivate': 'Deactivate {platform} gift {id} "{name}": with the price check on, it will be refused.',
    'gifts.what.activate': 'Activate {platform} gift {id} "{name}" again.',
    'gifts.done': '{platform} gift {id} is now at version {version}.', 'gifts.history.title': 'Versions of {platform} · {id}',
    'gifts.share.default': 'the default share', 'confirm': 'Confirm',
    'recv.id': 'Receiver id', 'recv.balance': 'Earnings balance', 'recv.payable': 'Payable', 'recv.held': 'Held', 'recv.owed': 'Owed',
    'recv.missing': 'This receiver has no earnings account: never credited a share.',
    'recv.payout': 'Pay out', 'recv.payout.open': 'Pay out…', 'recv.payout.confirm': 'Confirm payout', 'recv.newkey': 'New payout',
    'recv.keyhint': 'One key pays once: a double click or a retry makes one entry. For another payout, click "New payout".',
    'recv.what': 'Pay {amount} out of {receiver}\'s earnings (payable now: {payable}). Finance pays the money; giftd records it.',
    'recv.over': 'The amount must be from 1 to the payable {payable}.',
    'recv.done': 'Paid out {amount} ({recovered} first settled what was owed), entry #{entry}, earnings balance {balance}.',
    'recv.reused': 'This idempotency key was used for another amount or receiver; click "New payout".',
    'recv.report': 'Period report', 'recv.from': 'From (inclusive)', 'recv.to': 'To (exclusive)', 'recv.ledger': 'Earnings ledger', 'recv.top': 'Receivers of the last 24 hours',
    'recv.none': '(no receiver)', 'recv.notop': 'No gifts in the last 24 hours.',
    'rep.gifts': 'Gifts', 'rep.gold': 'Gold', 'rep.earned': 'Earned', 'rep.taken_back': 'Taken back', 'rep.shortfall': 'Shortfall',
    'rep.net': 'Net', 'rep.recovered': 'Recovered', 'rep.paid_out': 'Paid out', 'rep.period': 'Period',
    'ekind.gift': 'gift share', 'ekind.reversal': 'reversal', 'ekind.shortfall': 'shortfall', 'ekind.payout': 'payout', 'ekind.recovery': 'recovery',
    'chan.title': 'Polyv channel → receiver', 'chan.channel': 'Channel (channelId)', 'chan.map': 'Map…', 'chan.unmap': 'Unmap',
    'chan.hint': 'Polyv\'s donations in a channel go to the receiver mapped here; an unmapped channel\'s go all to the house. A change applies to later gifts only.',
    'chan.what.set': 'Credit Polyv channel {channel}\'s donations to receiver {receiver} (later gifts).',
    'chan.what.remove': 'Unmap Polyv channel {channel}: its later donations go all to the house.',
    'chan.empty': 'No channel is mapped.', 'chan.done': 'Saved.',
    'soon': 'This page comes once the gift economy\'s admin API lands.',
    'err.network': 'Cannot reach giftd: {msg}', 'loading': 'Loading…',
  },
};

let lang = localStorage.getItem('giftd.lang') === 'en' ? 'en' : 'zh';

export function language() { return lang; }

export function setLanguage(l) {
  lang = l === 'en' ? 'en' : 'zh';
  localStorage.setItem('giftd.lang', lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  translate(document);
}

// t returns the text of key in the current language with {name} replaced
// by values[name].
export function t(key, values = {}) {
  const s = dict[lang][key] ?? dict.zh[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ''));
}

export function translate(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
}

export function fmtNumber(n) {
  return new Intl.NumberFormat(lang === 'zh' ? 'zh-CN' : 'en-US').format(n);
}

export function fmtTime(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });
}
