// Optional enhancement: send the device's own clock with a form (the server time is always kept).
document.addEventListener("submit", function (event) {
  var form = event.target, now = new Date();
  var p = function (n) { return (n < 10 ? "0" : "") + n; };
  var time = form.querySelector("input[name=client_time]");
  var offset = form.querySelector("input[name=client_offset]");
  if (time) {
    time.value = now.getFullYear() + "-" + p(now.getMonth() + 1) + "-" + p(now.getDate()) + "T" +
      p(now.getHours()) + ":" + p(now.getMinutes()) + ":" + p(now.getSeconds());
  }
  if (offset) { offset.value = String(-now.getTimezoneOffset()); }
});
